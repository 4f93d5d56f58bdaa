"""Command line weight conversion.

  python -m plm_jax.convert.cli import --hf_dir HF_DIR --out EXPORT_DIR [--with_heads auto|true|false|init]
      HF directory (any registered model_type) -> EXPORT_DIR/params (orbax) + EXPORT_DIR/plm_config.json
      + the directory's tokenizer files (vocab.txt, vocab.json + merges.txt, spiece.model, ...)
  python -m plm_jax.convert.cli export --params EXPORT_DIR --out HF_DIR
      plm_jax params export (e.g. workdir/export; old <family>_config.json exports too)
      -> HF directory (config.json + model.safetensors + the run's tokenizer files),
      dispatched on the export's family

Errors print one line on stderr and exit with status 2.
"""
import argparse
import os
import sys
from typing import Optional, Sequence

_WITH_HEADS = {"auto": None, "true": True, "false": False, "init": "init"}


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m plm_jax.convert.cli",
                                   description="Convert weights between Hugging Face and plm_jax.")
  sub = parser.add_subparsers(dest="command", required=True)
  imp = sub.add_parser("import", help="Hugging Face directory -> plm_jax params export")
  imp.add_argument("--hf_dir", required=True, help="directory with config.json and model weights")
  imp.add_argument("--out", required=True, help="export directory to create (params/ + plm_config.json)")
  imp.add_argument("--with_heads", choices=sorted(_WITH_HEADS), default="auto",
                   help="pretraining heads: auto (as in the checkpoint), true, false, init (fresh)")
  imp.add_argument("--scan_layers", action="store_true", help="store the layers stacked for nn.scan")
  exp = sub.add_parser("export", help="plm_jax params export -> Hugging Face directory")
  exp.add_argument("--params", required=True, help="export directory (params/ + plm_config.json)")
  exp.add_argument("--out", required=True, help="Hugging Face directory to write")
  return parser


def run(args: argparse.Namespace) -> None:
  from plm_jax.convert import export, hf_io, registry  # pylint: disable=import-outside-toplevel
  if args.command == "import":
    if os.path.exists(os.path.join(args.out, export.PARAMS_DIR)):
      raise FileExistsError(f"{args.out}: already holds {export.PARAMS_DIR}/; choose a new --out")
    conv = registry.converter_for_hf_config(hf_io.read_config(args.hf_dir),
                                            os.path.join(args.hf_dir, "config.json"))
    cfg, params, _ = conv.import_hf(args.hf_dir, with_heads=_WITH_HEADS[args.with_heads])
    if args.scan_layers:
      cfg = registry.replace_config(cfg, scan_layers=True)
      params = conv.restack(params, cfg, to_scan=True)
    out = export.save_export(args.out, params, cfg, conv.model_type)
    tokenizer = export.copy_tokenizer_files(args.hf_dir, out)
    print(f"wrote {out}/{export.PARAMS_DIR} and {out}/{export.CONFIG_FILE}"
          f"{''.join(', ' + t for t in tokenizer)}")
  else:
    family, cfg, params = export.load_export(args.params)
    registry.get_converter(family, source=args.params).save_pretrained(params, cfg, args.out)
    tokenizer = export.copy_tokenizer_files(args.params, args.out)
    print(f"wrote {args.out}: config.json, model.safetensors{''.join(', ' + t for t in tokenizer)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parser().parse_args(argv)
  try:
    run(args)
  except (ValueError, OSError, KeyError) as e:  # ConversionError is a ValueError
    message = " ".join(str(e).split())
    print(f"error: {message}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
