"""Config: the loader (YAML diffs, key=value overrides, typed and checked), the sections stages share, and one module
of dataclasses per stage (the only home of defaults)."""
