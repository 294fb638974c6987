"""`timm-recal train` / `sweep`: a trainer built from timm library parts, reading timm train.py YAML configs."""
