"""The ``cogvideox-jax`` command line.

Sub-commands live with the code they drive; this file only assembles them and imports each
lazily, so ``cogvideox-jax --help`` stays fast. Two kinds of sub-command modules:

* ``add_parser(subparsers)`` registering a parser whose ``run(args)`` does the work;
* ``main(argv) -> int`` owning its own argparse (arguments passed through untouched).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# top-level sub-commands with add_parser(subparsers)
PARSER_COMMANDS = {
    "convert": "cogvideox_jax.pipeline.cli_commands",
    "export": "cogvideox_jax.train.cli_export",
    "sample": "cogvideox_jax.pipeline.cli_commands",
    "info": "cogvideox_jax.pipeline.cli_commands",
    "train": "cogvideox_jax.train.cli_train",
    "precompute": "cogvideox_jax.train.cli_precompute",
    "aot": "cogvideox_jax.tpu_aot",
}
# parser extensions of core sub-commands: name -> module with extend_<name>_parser(parser)
EXTENSIONS = {"sample": "cogvideox_jax.shapes.sampling"}   # the embedded default model, contrast words, best-of-N
# top-level sub-commands whose modules have main(argv): name -> (module, help)
TOP_ARGV_COMMANDS = {
    "train-shapes": ("cogvideox_jax.shapes.recipe",
                     "train the embedded default model end to end (shapes data, T5, VAE, transformer)"),
}
# grouped sub-commands whose modules have main(argv): group -> {name: (module, help)}
ARGV_COMMANDS = {
    "make-dataset": {
        "shapes": ("cogvideox_jax.shapes.dataset.make_dataset", "write the synthetic shapes text-video dataset"),
    },
    "eval": {
        "shapes": ("cogvideox_jax.shapes.eval.evaluator", "prompt adherence of shapes videos (classical vision)"),
        "vbench": ("cogvideox_jax.eval.vbench.runner", "VBench's five dimensions of the paper's Table 1"),
        "generate": ("cogvideox_jax.eval.vbench.generate", "sample the VBench prompt suites ({prompt}-{i}.mp4)"),
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cogvideox-jax", description="CogVideoX in JAX: convert, sample, train, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True)
    registered = set()
    for name, module in PARSER_COMMANDS.items():
        if module in registered:
            continue
        registered.add(module)
        mod = importlib.import_module(module)
        if hasattr(mod, "add_parsers"):
            mod.add_parsers(sub)
        else:
            mod.add_parser(sub)
    for name, module in EXTENSIONS.items():
        getattr(importlib.import_module(module), f"extend_{name}_parser")(sub.choices[name])
    for name, (module, help_text) in TOP_ARGV_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("argv", nargs=argparse.REMAINDER)
        p.set_defaults(run=_argv_runner(module))
    for group, commands in ARGV_COMMANDS.items():
        gp = sub.add_parser(group, help=f"{group}: " + ", ".join(commands))
        gsub = gp.add_subparsers(dest="subcommand", required=True)
        for name, (module, help_text) in commands.items():
            p = gsub.add_parser(name, help=help_text, add_help=False)
            p.add_argument("argv", nargs=argparse.REMAINDER)
            p.set_defaults(run=_argv_runner(module))
    return parser


def _argv_runner(module: str):
    def run(args) -> int:
        return int(importlib.import_module(module).main(list(args.argv)) or 0)

    return run


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # argv commands own their argparse: hand them the rest of the command line untouched
    if argv and argv[0] in TOP_ARGV_COMMANDS:
        return int(importlib.import_module(TOP_ARGV_COMMANDS[argv[0]][0]).main(argv[1:]) or 0)
    if len(argv) >= 2 and argv[0] in ARGV_COMMANDS and argv[1] in ARGV_COMMANDS[argv[0]]:
        return int(importlib.import_module(ARGV_COMMANDS[argv[0]][argv[1]][0]).main(argv[2:]) or 0)
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
