"""Recipe stage 7: RESULTS.md and results.json of an experiment from its scored test sets.

    python -m espnet_speechclip.bin.make_results --exp_dir exp/<tag> --test_set flickr8k_test
"""

import argparse
import logging

from espnet_speechclip.results import write_results


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--test_set", action="append", required=True, help="test set name (decode_<name>)")
    p.add_argument("--model_file", default=None, help="weights used, to report parameter counts")
    args = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    params = None
    if args.model_file:
        from espnet_speechclip.architectures import count_parameters
        from espnet_speechclip.inference import load_model

        model, _ = load_model(f"{args.exp_dir}/config.yaml", args.model_file)
        params = count_parameters(model)
    write_results(args.exp_dir, args.test_set, params)
    logging.info("wrote %s/RESULTS.md and %s/results.json", args.exp_dir, args.exp_dir)


if __name__ == "__main__":
    main()
