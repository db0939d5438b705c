"""Names and config values for the recipe's shell script, so that the rules live in Python once.

    python -m espnet_speechclip.bin.recipe_info config-value conf/paper/cascaded_base.yaml model
    python -m espnet_speechclip.bin.recipe_info set-name flickr8k test          # flickr8k_test
    python -m espnet_speechclip.bin.recipe_info exp-name synth conf/synth/parallel.yaml \
        [--tag T --n_configs N]
    python -m espnet_speechclip.bin.recipe_info demo-command synth \
        "conf/synth/parallel.yaml conf/synth/cascaded.yaml" [--tag T --expdir exp --dumpdir dump]
    python -m espnet_speechclip.bin.recipe_info data-dir exp/flickr8k_parallel_base test
        # dump/raw/flickr8k_test
    python -m espnet_speechclip.bin.recipe_info download-exp-name org/name@v1    # org/name@v1

``config-value`` prints a value of a config (its default when the file leaves it out; nothing for
None); see :mod:`espnet_speechclip.config`. ``demo-command`` prints the command that opens the web page
(:mod:`espnet_speechclip.bin.demo`) on a run's packed model with keywords and its test set.
``data-dir`` prints the data dir of a split of the corpus an experiment folder was trained on.
``download-exp-name`` prints the experiment folder (under ``exp/``) of ``--download_model``: a packed
model's file name, or the Hub repo id (refused when its revision would leave ``exp/``).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import List, Optional, Sequence

from espnet_speechclip.config import CLASS_SECTIONS, ConfigError, config_value, read_config
from espnet_speechclip.errors import InputError, run_cli
from espnet_speechclip.naming import SPLITS, exp_name, experiment_data_dir, set_name


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    value = sub.add_parser("config-value", help="a (dotted) key of a config, or its default")
    value.add_argument("config")
    value.add_argument("key", help="e.g. clip_conf.pretrained")
    name = sub.add_parser("set-name", help="the data set name of a corpus split")
    name.add_argument("corpus")
    name.add_argument("split")
    exp = sub.add_parser("exp-name", help="the experiment folder name of a training config")
    exp.add_argument("corpus")
    exp.add_argument("config")
    exp.add_argument("--tag", default="")
    exp.add_argument("--n_configs", type=int, default=1, help="how many configs the run trains")
    demo = sub.add_parser("demo-command", help="the command that opens the web page on a run's models")
    demo.add_argument("corpus")
    demo.add_argument("configs", help="the run's training configs, space-separated")
    demo.add_argument("--tag", default="")
    demo.add_argument("--expdir", default="exp")
    demo.add_argument("--dumpdir", default="dump")
    demo.add_argument(
        "--python", default="python3", help="the interpreter the command runs (run.sh --python)"
    )
    data = sub.add_parser("data-dir", help="the data dir of a split of an experiment's corpus")
    data.add_argument("exp_dir", help="experiment folder of the recipe (holds config.yaml)")
    data.add_argument("split", choices=SPLITS)
    download = sub.add_parser("download-exp-name", help="the experiment folder of --download_model")
    download.add_argument("model", help="a packed model (.zip or folder) or a Hub repo id")
    return p


def demo_command(
    corpus: str,
    configs: Sequence[str],
    tag: str = "",
    expdir: str = "exp",
    dumpdir: str = "dump",
    recipe_dir: Optional[str] = None,
    python: str = "python3",
) -> str:
    """The one command that serves the web page on a recipe run's models: the packed model of the first
    config with keywords (cascaded or hybrid; else the first config) and the test set's data dir.

    Its paths are relative to the recipe folder, as the data dirs' are, so it starts with ``cd`` there
    (``recipe_dir``, default the current directory) and sources ``path.sh`` (the project's virtualenv);
    ``python`` is the recipe's interpreter (its ``--python``).
    """
    if not configs:
        raise InputError("no training config given")
    kinds = [config_value(read_config(c), "model") for c in configs]
    chosen = next((c for c, k in zip(configs, kinds) if k in ("cascaded", "hybrid")), configs[0])
    exp = exp_name(corpus, chosen, tag or None, len(configs))
    model = f"{expdir}/{exp}/packed/model.zip"
    images = f"{dumpdir}/raw/{set_name(corpus, 'test')}"
    where = Path(recipe_dir or ".").resolve()
    return (
        f"cd {shlex.quote(str(where))} && . ./path.sh && {python} -m espnet_speechclip.bin.demo "
        f"--model {shlex.quote(model)} --images {shlex.quote(images)}"
    )


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    try:
        if args.command == "config-value":
            value = config_value(read_config(args.config), args.key)
            if value is None and args.key.split(".")[0] in CLASS_SECTIONS:
                # a constructor's default: only then import the model classes (and with them ESPnet)
                from espnet_speechclip.models.builder import option_value

                value = option_value(read_config(args.config), args.key)
            print("" if value is None else value)
        elif args.command == "data-dir":
            print(experiment_data_dir(read_config(Path(args.exp_dir) / "config.yaml"), args.split))
        elif args.command == "set-name":
            print(set_name(args.corpus, args.split))
        elif args.command == "download-exp-name":
            # the Hub id rules live with the Hub code (which imports the inference package: only here)
            from espnet_speechclip.inference.hub import exp_folder_name

            print(exp_folder_name(args.model))
        elif args.command == "demo-command":
            print(
                demo_command(
                    args.corpus, args.configs.split(), args.tag, args.expdir, args.dumpdir, python=args.python
                )
            )
        else:
            print(exp_name(args.corpus, args.config, args.tag or None, args.n_configs))
    except (FileNotFoundError, ConfigError, ValueError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    run_cli(main)
