"""Config: the loader (YAML diffs, key=value overrides, typed and checked, renamed keys), the sections stages share,
one module of dataclasses per stage (the only home of defaults), presets, and the --help built from them."""
