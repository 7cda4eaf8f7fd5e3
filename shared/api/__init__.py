"""HTTP handlers, one module per endpoint group. Each takes a Starlette Request (what the
Functions HTTP streaming extension passes) and returns a Starlette Response."""
