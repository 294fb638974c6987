"""The ``timm-recal`` command. Subcommands declare their arguments here cheaply; heavy imports (training,
ONNX) happen when a subcommand runs, and a missing optional extra is reported by name."""
import argparse
import sys
from typing import List, Optional

from .errors import RecalError
from .outputs import terminate_as_interrupt
from .version import __version__

__all__ = ['main']

#: extra that provides each top-level module a subcommand needs
EXTRA_FOR_MODULE = {
    'yaml': 'train', 'tqdm': 'train', 'matplotlib': 'train', 'onnx': 'deploy', 'onnxruntime': 'deploy',
    'onnxscript': 'deploy', 'onnxslim': 'deploy', 'huggingface_hub': 'hub', 'safetensors': 'hub',
    'ptflops': 'flops',
}


class CliError(RecalError):
    """An error with a message for the user; ``main`` prints it and exits non-zero (no traceback)."""


def _add_models_parser(sub) -> None:
    p = sub.add_parser('models', help='list the registered timm-recal models')
    p.add_argument('filter', nargs='*', help="wildcard filters, e.g. 'ab_*' '*cifar'")
    p.add_argument('--stats', action='store_true', help='also count params and GMACs (slower)')
    p.add_argument('--json', action='store_true', help='print JSON instead of a table')
    p.add_argument('--markdown', action='store_true', help="print the README's Markdown table (implies --stats)")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    import json
    from .registry import model_table
    rows = model_table(args.filter or None, stats=args.stats or args.markdown)
    if not rows:
        raise CliError(f"no registered model matches {' '.join(args.filter)}")
    if args.markdown:
        from .registry import render_markdown
        print(render_markdown(rows))
        return 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = ['name', 'paper'] + (['params', 'gmacs', 'input'] if args.stats else [])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print('  '.join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print('  '.join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='timm-recal', description='Channel-recalibration CNNs for timm: models, training and deployment.')
    parser.add_argument('--version', action='version', version=f'timm-recal {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    _add_models_parser(sub)
    from .training.cli import add_package_parser, add_train_parser
    add_train_parser(sub)
    add_package_parser(sub)
    for add in _optional_parsers():
        add(sub)
    return parser


def _optional_parsers():
    """Parsers of subcommands that live in other modules (sweep; the deploy verbs, ``timm_recal_deploy.cli.VERBS``),
    if that part of the project is installed."""
    adders = []
    for modname, attr in (('timm_recal.training.sweep_cli', 'add_parser'),
                          ('timm_recal_deploy.cli', 'add_parsers'),
                          ('timm_recal.publish', 'add_parser')):
        try:
            mod = __import__(modname, fromlist=[attr])
        except ModuleNotFoundError as e:
            if e.name and modname.startswith(e.name):
                continue  # that part of the project is not installed
            raise
        adders.append(getattr(mod, attr))
    return adders


def main(argv: Optional[List[str]] = None) -> int:
    try:
        parser = build_parser()  # imports the subcommands' modules: a Ctrl-C may land here
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad option value (argparse printed why): its status, no exit here
        return e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    try:
        with terminate_as_interrupt():  # SIGTERM runs the same cleanup as Ctrl-C: no half-written outputs
            status = int(args.func(args) or 0)
        return status
    except ModuleNotFoundError as e:
        extra = EXTRA_FOR_MODULE.get((e.name or '').split('.')[0])
        if extra:
            print(f"timm-recal {args.command}: needs the '{e.name}' package; "
                  f"install it with: pip install 'timm-recal[{extra}]'", file=sys.stderr)
            return 3
        raise
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except (RecalError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        message = ' '.join(str(e).split()) or type(e).__name__  # one line
        print(f"timm-recal {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
