"""A strict Bicep checker for the errors checkov does not see (no Bicep compiler runs here).

    python3 scripts/bicep_lint.py infra            # every *.bicep under infra/
    python3 scripts/bicep_lint.py infra/main.bicep

Standard library only, so it runs in any Python 3.11 (scripts/lint_infra.sh runs it; so does
tests/test_bicep_lint.py). It parses the Bicep language (declarations, decorators, expressions,
interpolated strings, loops, lambdas) and reports, with file:line:
  * syntax errors (what the compiler would reject before anything else);
  * decorators: the same decorator twice on one declaration (BCP166), unknown decorators,
    decorators on a declaration that cannot carry them, length/value limits on the wrong type,
    decorators attached to nothing;
  * duplicate names (params, vars, resources, modules, types, functions share one namespace;
    outputs have their own);
  * references to names never declared (params, vars, resources, modules, loop variables, lambda
    parameters), calls to functions Bicep does not have;
  * params and vars never used;
  * modules: the path exists, every `params:` key is a parameter of the module, every required
    module parameter is given.

It is not a compiler: types of expressions and resource schemas are not checked (checkov and
`az bicep build` in the deploy workflow cover those). `evaluate()` renders a var or param with
given parameter values, which the tests use to check app settings per deployment mode.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------------

PUNCT = [
    "...",
    "=>",
    "==",
    "!=",
    "=~",
    "!~",
    "<=",
    ">=",
    "&&",
    "||",
    "??",
    ".?",
    "[?",
    "::",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    ":",
    ".",
    "?",
    "!",
    "=",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "@",
    "|",
]
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


class BicepSyntaxError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass
class Tok:
    kind: str  # ident | num | str | punct | nl | eof
    value: Any
    line: int


def tokenize(text: str, line: int = 1, *, stop_at_brace: bool = False) -> tuple[list[Tok], int, int]:
    """Tokens of `text`; with stop_at_brace, stop at the `}` closing an interpolation and
    return (tokens, chars consumed, line)."""
    toks: list[Tok] = []
    i, n, depth = 0, len(text), 0
    while i < n:
        c = text[i]
        if c == "\n":
            toks.append(Tok("nl", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise BicepSyntaxError(line, "unterminated /* comment")
            line += text.count("\n", i, j)
            i = j + 2
        elif text.startswith("'''", i):
            j = text.find("'''", i + 3)
            if j < 0:
                raise BicepSyntaxError(line, "unterminated ''' string")
            toks.append(Tok("str", [text[i + 3 : j]], line))
            line += text.count("\n", i, j)
            i = j + 3
        elif c == "'":
            start = line
            parts, i, line = _string(text, i + 1, line)
            toks.append(Tok("str", parts, start))
        elif m := IDENT.match(text, i):
            toks.append(Tok("ident", m.group(), line))
            i = m.end()
        elif m := NUMBER.match(text, i):
            toks.append(Tok("num", m.group(), line))
            i = m.end()
        else:
            for p in PUNCT:
                if text.startswith(p, i):
                    break
            else:
                raise BicepSyntaxError(line, f"unexpected character {c!r}")
            if stop_at_brace:
                if p == "{":
                    depth += 1
                elif p == "}":
                    if depth == 0:
                        return toks, i + 1, line
                    depth -= 1
            toks.append(Tok("punct", p, line))
            i += len(p)
    if stop_at_brace:
        raise BicepSyntaxError(line, "unterminated ${...} in a string")
    toks.append(Tok("eof", None, line))
    return toks, i, line


ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}


def _string(text: str, i: int, line: int) -> tuple[list[Any], int, int]:
    """A '...' string from just after the quote: [literal, [tokens], literal, ...]."""
    parts: list[Any] = []
    buf: list[str] = []
    start = line
    while True:
        if i >= len(text):
            raise BicepSyntaxError(start, "unterminated string")
        c = text[i]
        if c == "\n":
            raise BicepSyntaxError(line, "a '...' string cannot span lines (use ''' for that)")
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "u":
                m = re.match(r"\\u\{([0-9A-Fa-f]+)\}", text[i:])
                if not m:
                    raise BicepSyntaxError(line, "bad \\u{...} escape")
                buf.append(chr(int(m.group(1), 16)))
                i += m.end()
                continue
            if nxt not in ESCAPES:
                raise BicepSyntaxError(line, f"unknown escape \\{nxt} in a string")
            buf.append(ESCAPES[nxt])
            i += 2
        elif c == "'":
            parts.append("".join(buf))
            return parts, i + 1, line
        elif text.startswith("${", i):
            parts.append("".join(buf))
            buf = []
            toks, used, line = tokenize(text[i + 2 :], line, stop_at_brace=True)
            toks.append(Tok("eof", None, line))
            parts.append(toks)
            i += 2 + used
        else:
            buf.append(c)
            i += 1


# --------------------------------------------------------------------------------------------
# syntax tree
# --------------------------------------------------------------------------------------------


@dataclass
class Node:
    kind: str  # lit str ref member index call obj arr for ternary bin un lambda if assert
    line: int
    a: Any = None
    b: Any = None
    c: Any = None
    d: Any = None


@dataclass
class Decorator:
    name: str
    args: list[Node]
    line: int


@dataclass
class Decl:
    keyword: str  # param var resource module output type func import metadata targetScope extension
    name: str
    line: int
    decorators: list[Decorator] = field(default_factory=list)
    type_text: str = ""  # param/output type as written; resource type string; module path
    value: Node | None = None  # default / value / body
    existing: bool = False
    params: list[str] = field(default_factory=list)  # func parameters


class Parser:
    def __init__(self, toks: list[Tok]) -> None:
        self.toks = toks
        self.i = 0

    # -- token helpers -------------------------------------------------------------------------
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def at(self, value: str, kind: str = "punct") -> bool:
        return self.tok.kind == kind and self.tok.value == value

    def next(self) -> Tok:
        t = self.tok
        self.i += 1
        return t

    def expect(self, value: str, kind: str = "punct") -> Tok:
        if not self.at(value, kind):
            raise BicepSyntaxError(self.tok.line, f"expected {value!r}, found {self._show()}")
        return self.next()

    def ident(self) -> Tok:
        if self.tok.kind != "ident":
            raise BicepSyntaxError(self.tok.line, f"expected a name, found {self._show()}")
        return self.next()

    def skip_nl(self) -> None:
        while self.tok.kind == "nl":
            self.i += 1

    def _show(self) -> str:
        t = self.tok
        if t.kind == "eof":
            return "end of file"
        if t.kind == "nl":
            return "end of line"
        if t.kind == "str":
            return "a string"
        return repr(t.value)

    def end_of_statement(self) -> None:
        if self.tok.kind not in ("nl", "eof"):
            raise BicepSyntaxError(self.tok.line, f"expected end of line, found {self._show()}")

    # -- statements ----------------------------------------------------------------------------
    def program(self) -> tuple[list[Decl], list[Decorator]]:
        decls: list[Decl] = []
        pending: list[Decorator] = []
        dangling: list[Decorator] = []
        while True:
            self.skip_nl()
            if self.tok.kind == "eof":
                break
            if self.at("@"):
                pending.append(self.decorator())
                continue
            decl = self.statement()
            decl.decorators = pending
            pending = []
            decls.append(decl)
        dangling.extend(pending)
        return decls, dangling

    def decorator(self) -> Decorator:
        line = self.expect("@").line
        name = self.ident().value
        if self.at("."):  # sys.description(...)
            self.next()
            name = self.ident().value
        self.expect("(")
        args = self.args(")")
        self.end_of_statement()
        return Decorator(name, args, line)

    def statement(self) -> Decl:
        t = self.tok
        if t.kind != "ident":
            raise BicepSyntaxError(t.line, f"expected a declaration, found {self._show()}")
        kw = t.value
        self.next()
        if kw == "targetScope":
            self.expect("=")
            d = Decl(kw, kw, t.line, value=self.expr())
        elif kw in ("param", "output"):
            name = self.ident().value
            type_text = self.type_until("=" if kw == "output" else None)
            value = None
            if self.at("="):
                self.next()
                self.skip_nl()
                value = self.expr()
            elif kw == "output":
                raise BicepSyntaxError(t.line, f"output {name} has no value")
            d = Decl(kw, name, t.line, type_text=type_text, value=value)
        elif kw in ("var", "metadata"):
            name = self.ident().value
            self.expect("=")
            self.skip_nl()
            d = Decl(kw, name, t.line, value=self.expr())
        elif kw in ("resource", "module"):
            name = self.ident().value
            if self.tok.kind != "str":
                raise BicepSyntaxError(self.tok.line, f"{kw} {name}: expected its type/path string")
            type_text = literal_string(self.next())
            existing = False
            if self.at("existing", "ident"):
                self.next()
                existing = True
            self.expect("=")
            d = Decl(kw, name, t.line, type_text=type_text, value=self.body(), existing=existing)
        elif kw == "type":
            name = self.ident().value
            self.expect("=")
            d = Decl(kw, name, t.line, type_text=self.type_until(None))
        elif kw == "func":
            name = self.ident().value
            self.expect("(")
            params: list[str] = []
            while not self.at(")"):
                params.append(self.ident().value)
                self.type_until(",)")
                if self.at(","):
                    self.next()
            self.next()
            self.type_until("=>")
            self.expect("=>")
            self.skip_nl()
            d = Decl(kw, name, t.line, value=self.expr(), params=params)
        elif kw in ("import", "extension", "provider", "using"):
            while self.tok.kind not in ("nl", "eof"):
                self.next()
            return Decl(kw, "", t.line)
        else:
            raise BicepSyntaxError(t.line, f"{kw!r} does not start a declaration")
        self.end_of_statement()
        return d

    def type_until(self, stop: str | None) -> str:
        """A type expression as text, up to `=` (or one of `stop`), end of line at depth 0."""
        out: list[str] = []
        depth = 0
        stops = {"="} if stop is None else set(stop) if stop in (",)",) else {stop}
        while True:
            t = self.tok
            if t.kind == "eof":
                break
            if depth == 0 and (t.kind == "nl" or (t.kind == "punct" and t.value in stops)):
                break
            if t.kind == "punct" and t.value in "{[(":
                depth += 1
            elif t.kind == "punct" and t.value in "}])":
                depth -= 1
            out.append(literal_string(t) if t.kind == "str" else str(t.value))
            self.next()
        return " ".join(x for x in out if x != "\n").strip()

    def body(self) -> Node:
        """A resource or module body: {...}, if (cond) {...}, or [for ...]."""
        self.skip_nl()
        if self.at("if", "ident"):
            line = self.next().line
            self.expect("(")
            self.skip_nl()
            cond = self.expr()
            self.skip_nl()
            self.expect(")")
            return Node("if", line, cond, self.obj())
        if self.at("["):
            return self.array()
        return self.obj()

    # -- expressions ---------------------------------------------------------------------------
    def expr(self) -> Node:
        # a lambda: x => ..., (x, y) => ...
        if self.tok.kind == "ident" and self.peek().kind == "punct" and self.peek().value == "=>":
            line = self.tok.line
            name = self.next().value
            self.next()
            self.skip_nl()
            return Node("lambda", line, [name], self.expr())
        if self.at("(") and self._is_lambda():
            line = self.next().line
            names: list[str] = []
            while not self.at(")"):
                names.append(self.ident().value)
                if self.at(","):
                    self.next()
            self.next()
            self.expect("=>")
            self.skip_nl()
            return Node("lambda", line, names, self.expr())
        cond = self.binary(0)
        if self.at("?"):
            line = self.next().line
            self.skip_nl()
            yes = self.expr()
            self.skip_nl()
            self.expect(":")
            self.skip_nl()
            no = self.expr()
            return Node("ternary", line, cond, yes, no)
        return cond

    def _is_lambda(self) -> bool:
        j = self.i + 1
        while self.toks[j].kind == "ident" or (self.toks[j].kind == "punct" and self.toks[j].value == ","):
            j += 1
        return (
            self.toks[j].kind == "punct"
            and self.toks[j].value == ")"
            and self.toks[j + 1].kind == "punct"
            and self.toks[j + 1].value == "=>"
        )

    LEVELS = [("??",), ("||",), ("&&",), ("==", "!=", "=~", "!~"), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%")]

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.tok.kind == "punct" and self.tok.value in self.LEVELS[level]:
            op = self.next()
            self.skip_nl()
            left = Node("bin", op.line, op.value, left, self.binary(level + 1))
        return left

    def unary(self) -> Node:
        if self.tok.kind == "punct" and self.tok.value in ("!", "-"):
            op = self.next()
            return Node("un", op.line, op.value, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            t = self.tok
            if t.kind == "punct" and t.value in (".", ".?"):
                self.next()
                name = self.ident()
                if self.at("("):
                    self.next()
                    node = Node("call", name.line, node, name.value, self.args(")"))
                else:
                    node = Node("member", name.line, node, name.value, t.value == ".?")
            elif t.kind == "punct" and t.value in ("[", "[?"):
                self.next()
                self.skip_nl()
                idx = self.expr()
                self.skip_nl()
                self.expect("]")
                node = Node("index", t.line, node, idx)
            elif (
                t.kind == "punct" and t.value == "!" and not (self.peek().kind == "punct" and self.peek().value == "=")
            ):
                self.next()
                node = Node("assert", t.line, node)
            elif t.kind == "punct" and t.value == "::":
                self.next()
                node = Node("member", t.line, node, self.ident().value, False)
            else:
                return node

    def args(self, close: str) -> list[Node]:
        out: list[Node] = []
        self.skip_nl()
        while not self.at(close):
            out.append(self.expr())
            self.skip_nl()
            if self.at(","):
                self.next()
                self.skip_nl()
            elif not self.at(close):
                raise BicepSyntaxError(self.tok.line, f"expected ',' or {close!r}, found {self._show()}")
        self.next()
        return out

    def primary(self) -> Node:
        t = self.tok
        if t.kind == "num":
            self.next()
            return Node("lit", t.line, int(t.value) if t.value.isdigit() else float(t.value))
        if t.kind == "str":
            self.next()
            parts = [p if isinstance(p, str) else Parser(p).whole_expr() for p in t.value]
            if len(parts) == 1:
                return Node("lit", t.line, parts[0])
            return Node("str", t.line, parts)
        if t.kind == "ident":
            self.next()
            if t.value in ("true", "false"):
                return Node("lit", t.line, t.value == "true")
            if t.value == "null":
                return Node("lit", t.line, None)
            if self.at("("):
                self.next()
                return Node("call", t.line, None, t.value, self.args(")"))
            namespaced = t.value in ("az", "sys") and self.at(".")  # az.resourceGroup()
            if (
                namespaced
                and self.peek().kind == "ident"
                and self.peek(2).kind == "punct"
                and self.peek(2).value == "("
            ):
                self.next()
                name = self.ident().value
                self.next()
                return Node("call", t.line, None, name, self.args(")"))
            return Node("ref", t.line, t.value)
        if self.at("("):
            self.next()
            self.skip_nl()
            inner = self.expr()
            self.skip_nl()
            self.expect(")")
            return inner
        if self.at("{"):
            return self.obj()
        if self.at("["):
            return self.array()
        raise BicepSyntaxError(t.line, f"expected an expression, found {self._show()}")

    def whole_expr(self) -> Node:
        self.skip_nl()
        node = self.expr()
        self.skip_nl()
        if self.tok.kind != "eof":
            raise BicepSyntaxError(self.tok.line, f"unexpected {self._show()} in ${{...}}")
        return node

    def obj(self) -> Node:
        line = self.expect("{").line
        props: list[tuple[str, Node | None, int]] = []
        while True:
            self.skip_nl()
            if self.at("}"):
                self.next()
                return Node("obj", line, props)
            if self.at("..."):
                sline = self.next().line
                props.append(("...", self.expr(), sline))
            else:
                while self.at("@"):  # decorators on properties of object types
                    self.decorator()
                    self.skip_nl()
                k = self.next()
                if k.kind == "ident":
                    key = k.value
                elif k.kind == "str":
                    key = literal_string(k, allow_interp=True)
                    if isinstance(key, list):  # '${expr}': value
                        key = "${}"
                else:
                    raise BicepSyntaxError(k.line, f"expected a property name, found {k.value!r}")
                self.expect(":")
                self.skip_nl()
                props.append((key, self.expr(), k.line))
            if self.at(","):
                self.next()
            elif not (self.tok.kind == "nl" or self.at("}")):
                raise BicepSyntaxError(self.tok.line, f"expected end of line or '}}', found {self._show()}")

    def array(self) -> Node:
        line = self.expect("[").line
        self.skip_nl()
        if self.at("for", "ident"):
            self.next()
            names: list[str] = []
            if self.at("("):
                self.next()
                while not self.at(")"):
                    names.append(self.ident().value)
                    if self.at(","):
                        self.next()
                self.next()
            else:
                names.append(self.ident().value)
            self.expect("in", "ident")
            source = self.expr()
            self.expect(":")
            self.skip_nl()
            if self.at("if", "ident"):
                body = self.body()
            else:
                body = self.expr()
            self.skip_nl()
            self.expect("]")
            return Node("for", line, names, source, body)
        items: list[Node] = []
        while True:
            self.skip_nl()
            if self.at("]"):
                self.next()
                return Node("arr", line, items)
            items.append(self.expr())
            if self.at(","):
                self.next()
            elif not (self.tok.kind == "nl" or self.at("]")):
                raise BicepSyntaxError(self.tok.line, f"expected end of line or ']', found {self._show()}")


def literal_string(t: Tok, allow_interp: bool = False) -> Any:
    parts = t.value
    if len(parts) == 1:
        return parts[0]
    if allow_interp:
        return parts
    raise BicepSyntaxError(t.line, "an interpolated string is not allowed here")


def parse(text: str) -> tuple[list[Decl], list[Decorator]]:
    toks, _, _ = tokenize(text)
    return Parser(toks).program()


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------

FUNCTIONS = set(
    [
        "any",
        "array",
        "base64",
        "base64ToJson",
        "base64ToString",
        "bool",
        "buildUri",
        "cidrHost",
        "cidrSubnet",
        "coalesce",
        "concat",
        "contains",
        "dataUri",
        "dataUriToString",
        "dateTimeAdd",
        "dateTimeFromEpoch",
        "dateTimeToEpoch",
        "deployer",
        "deployment",
        "empty",
        "endsWith",
        "environment",
        "extensionResourceId",
        "fail",
        "filter",
        "first",
        "flatten",
        "format",
        "getSecret",
        "groupBy",
        "guid",
        "indexOf",
        "int",
        "intersection",
        "items",
        "join",
        "json",
        "last",
        "lastIndexOf",
        "length",
        "loadFileAsBase64",
        "loadJsonContent",
        "loadTextContent",
        "loadYamlContent",
        "managementGroup",
        "managementGroupResourceId",
        "map",
        "mapValues",
        "max",
        "min",
        "nameof",
        "newGuid",
        "objectKeys",
        "padLeft",
        "parseCidr",
        "parseUri",
        "pickZones",
        "range",
        "readEnvironmentVariable",
        "reduce",
        "reference",
        "replace",
        "resourceGroup",
        "resourceId",
        "shallowMerge",
        "skip",
        "sort",
        "split",
        "startsWith",
        "string",
        "subscription",
        "subscriptionResourceId",
        "substring",
        "take",
        "tenant",
        "tenantResourceId",
        "toLower",
        "toObject",
        "toUpper",
        "trim",
        "union",
        "uniqueString",
        "uri",
        "uriComponent",
        "uriComponentToString",
        "utcNow",
        "list",
        "listKeys",
        "listSecrets",
        "listAccountSas",
    ]
)
DECORATORS: dict[str, set[str]] = {
    "description": {"param", "var", "resource", "module", "output", "type", "func", "metadata"},
    "metadata": {"param", "var", "resource", "module", "output", "type", "func"},
    "minLength": {"param", "output", "type"},
    "maxLength": {"param", "output", "type"},
    "minValue": {"param", "output", "type"},
    "maxValue": {"param", "output", "type"},
    "allowed": {"param", "output"},
    "secure": {"param", "output", "type"},
    "sealed": {"param", "output", "type"},
    "discriminator": {"param", "output", "type"},
    "export": {"var", "type", "func"},
    "batchSize": {"resource", "module"},
    "onlyIfNotExists": {"resource"},
    "nullable": set(),
}
LENGTH_TYPES = ("string", "array")
BUILTIN_NAMES = {"az", "sys"}


@dataclass
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check_text(text: str, path: str = "<bicep>", *, base_dir: Path | None = None) -> list[Finding]:
    """Every finding for one Bicep file's text; base_dir resolves module paths (skipped if None)."""
    try:
        decls, dangling = parse(text)
    except BicepSyntaxError as exc:
        return [Finding(path, exc.line, f"syntax error: {exc.message}")]
    out: list[Finding] = []

    def add(line: int, message: str) -> None:
        out.append(Finding(path, line, message))

    for dec in dangling:
        add(dec.line, f"@{dec.name} is attached to nothing (no declaration follows it)")

    # names
    symbols: dict[str, Decl] = {}
    outputs: dict[str, Decl] = {}
    for d in decls:
        if d.keyword in ("import", "extension", "provider", "using", "targetScope"):
            continue
        table = outputs if d.keyword == "output" else symbols
        if d.keyword == "metadata":
            continue
        if d.name in table:
            add(d.line, f"{d.name!r} is declared twice (first on line {table[d.name].line})")
        else:
            table[d.name] = d
        if d.name in FUNCTIONS and d.keyword != "output":
            add(d.line, f"{d.name!r} shadows the Bicep function of that name")

    # decorators
    for d in decls:
        seen: dict[str, int] = {}
        for dec in d.decorators:
            if dec.name in seen:
                add(
                    dec.line,
                    f"duplicate @{dec.name} decorator on {d.keyword} {d.name} (already on line {seen[dec.name]}; "
                    "BCP166): the decorator above it probably belongs to the declaration before",
                )
            seen[dec.name] = dec.line
            allowed_on = DECORATORS.get(dec.name)
            if allowed_on is None:
                add(dec.line, f"unknown decorator @{dec.name} on {d.keyword} {d.name}")
                continue
            if d.keyword not in allowed_on:
                add(dec.line, f"@{dec.name} cannot decorate a {d.keyword} ({d.keyword} {d.name})")
                continue
            base = d.type_text.split("[")[0].strip() if d.type_text else ""
            is_array = d.type_text.endswith("[]") or base == "array"
            length_limit = dec.name in ("minLength", "maxLength") and d.keyword == "param"
            if length_limit and base not in LENGTH_TYPES and not is_array:
                add(dec.line, f"@{dec.name} needs a string or array parameter; {d.name} is {d.type_text}")
            if dec.name in ("minValue", "maxValue") and d.keyword == "param" and base != "int":
                add(dec.line, f"@{dec.name} needs an int parameter; {d.name} is {d.type_text}")
            if dec.name == "secure" and d.keyword == "param" and base not in ("string", "object"):
                add(dec.line, f"@secure needs a string or object parameter; {d.name} is {d.type_text}")
            if dec.name == "batchSize" and (d.value is None or d.value.kind != "for"):
                add(dec.line, f"@batchSize needs a loop; {d.keyword} {d.name} is not one")
        if d.keyword == "param" and d.type_text == "":
            add(d.line, f"param {d.name} has no type")

    # references
    used: set[str] = set()
    for d in decls:
        scope = set(d.params)
        for node in (d.value, *(a for dec in d.decorators for a in dec.args)):
            if node is not None:
                _refs(node, scope, symbols, used, add, self_name=d.name if d.keyword in ("var", "param") else None)
    for d in decls:
        if d.keyword in ("param", "var") and d.name not in used:
            add(d.line, f"{d.keyword} {d.name} is declared but never used")

    # modules
    if base_dir is not None:
        for d in decls:
            if d.keyword == "module":
                out.extend(_check_module(d, base_dir, path))
    return out


def _refs(
    node: Node,
    scope: set[str],
    symbols: dict[str, Decl],
    used: set[str],
    add: Any,
    self_name: str | None,
) -> None:
    k = node.kind
    if k == "ref":
        name = node.a
        if name in scope or name in BUILTIN_NAMES:
            return
        if name not in symbols:
            add(node.line, f"{name!r} is not declared (no param, var, resource, module or loop variable of that name)")
        elif name == self_name:
            add(node.line, f"{name!r} refers to itself")
        used.add(name)
        return
    if k == "call":
        if node.a is None:
            if node.b not in FUNCTIONS and node.b not in symbols:
                add(node.line, f"{node.b}() is not a Bicep function")
            elif node.b in symbols:
                used.add(node.b)
        else:
            _refs(node.a, scope, symbols, used, add, self_name)
        for arg in node.c:
            _refs(arg, scope, symbols, used, add, self_name)
        return
    if k in ("lambda",):
        _refs(node.b, scope | set(node.a), symbols, used, add, self_name)
        return
    if k == "for":
        _refs(node.b, scope, symbols, used, add, self_name)
        _refs(node.c, scope | set(node.a), symbols, used, add, self_name)
        return
    if k == "str":
        for p in node.a:
            if isinstance(p, Node):
                _refs(p, scope, symbols, used, add, self_name)
        return
    if k == "obj":
        for _key, value, _line in node.a:
            if value is not None:
                _refs(value, scope, symbols, used, add, self_name)
        return
    if k == "arr":
        for item in node.a:
            _refs(item, scope, symbols, used, add, self_name)
        return
    for child in (node.a, node.b, node.c, node.d):
        if isinstance(child, Node):
            _refs(child, scope, symbols, used, add, self_name)


def _body_object(node: Node | None) -> Node | None:
    while node is not None and node.kind in ("if", "for"):
        node = node.b if node.kind == "if" else node.c
    return node if node is not None and node.kind == "obj" else None


def _check_module(d: Decl, base_dir: Path, path: str) -> list[Finding]:
    target = (base_dir / d.type_text).resolve()
    if not target.is_file():
        return [Finding(path, d.line, f"module {d.name}: {d.type_text} does not exist")]
    try:
        mdecls, _ = parse(target.read_text(encoding="utf-8"))
    except BicepSyntaxError:
        return []  # reported when that file is checked
    declared = {m.name: m for m in mdecls if m.keyword == "param"}
    body = _body_object(d.value)
    given: set[str] = set()
    if body is not None:
        for key, value, _line in body.a:
            if key == "params" and value is not None and value.kind == "obj":
                given = {k for k, _v, _l in value.a}
    out = [
        Finding(path, d.line, f"module {d.name}: {d.type_text} has no parameter {name!r}")
        for name in sorted(given - set(declared))
    ]
    required = {n for n, m in declared.items() if m.value is None and not m.type_text.endswith("?")}
    out += [
        Finding(path, d.line, f"module {d.name}: required parameter {name!r} of {d.type_text} is not given")
        for name in sorted(required - given)
    ]
    return out


def check_paths(paths: list[Path]) -> list[Finding]:
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.rglob("*.bicep")) if p.is_dir() else [p])
    out: list[Finding] = []
    for f in files:
        out.extend(check_text(f.read_text(encoding="utf-8"), str(f), base_dir=f.parent))
    return out


# --------------------------------------------------------------------------------------------
# rendering (for tests): evaluate vars and params with parameter values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opaque:
    """A value only Azure knows at deployment time (a resource property, a module output)."""

    text: str

    def __str__(self) -> str:
        return f"<{self.text}>"


class CannotRender(Exception):
    pass


class Renderer:
    """Evaluates declarations of one template for given parameter values (params not given take
    their defaults). Resources and modules evaluate to Opaque values; so do functions whose
    result depends on Azure (uniqueString, resourceGroup().id ...)."""

    def __init__(self, text: str, params: dict[str, Any]) -> None:
        decls, _ = parse(text)
        self.decls = {d.name: d for d in decls if d.keyword in ("param", "var", "resource", "module")}
        self.params = params
        self.cache: dict[str, Any] = {}

    def value(self, name: str) -> Any:
        if name in self.cache:
            return self.cache[name]
        d = self.decls[name]
        if d.keyword == "param":
            if name in self.params:
                v = self.params[name]
            elif d.value is None:
                raise CannotRender(f"param {name} has no value and no default")
            else:
                v = self.eval(d.value, {})
        elif d.keyword == "var":
            v = self.eval(d.value, {})
        else:
            v = Opaque(name)
        self.cache[name] = v
        return v

    def condition(self, name: str) -> Any:
        """The `if (...)` condition of a resource or module: True/False (True if none)."""
        d = self.decls[name]
        return True if d.value is None or d.value.kind != "if" else self.eval(d.value.a, {})

    def eval(self, n: Node, env: dict[str, Any]) -> Any:
        k = n.kind
        if k == "lit":
            return n.a
        if k == "str":
            vals = [p if isinstance(p, str) else self.eval(p, env) for p in n.a]
            text = "".join(_to_text(v) for v in vals)
            return Opaque(text) if any(isinstance(v, Opaque) for v in vals) else text
        if k == "ref":
            return env[n.a] if n.a in env else self.value(n.a)
        if k == "obj":
            out: dict[str, Any] = {}
            for key, value, _line in n.a:
                if key == "...":
                    out.update(self.eval(value, env))
                else:
                    out[key] = self.eval(value, env)
            return out
        if k == "arr":
            return [self.eval(i, env) for i in n.a]
        if k == "member":
            obj = self.eval(n.a, env)
            if isinstance(obj, Opaque):
                return Opaque(f"{obj.text}.{n.b}")
            if isinstance(obj, dict):
                if n.b in obj:
                    return obj[n.b]
                if n.c:
                    return None
                raise CannotRender(f"line {n.line}: no property {n.b}")
            if obj is None and n.c:
                return None
            raise CannotRender(f"line {n.line}: .{n.b} of {obj!r}")
        if k == "index":
            obj, idx = self.eval(n.a, env), self.eval(n.b, env)
            if isinstance(obj, Opaque) or isinstance(idx, Opaque):
                return Opaque(f"{obj}[{idx}]")
            return obj[idx]
        if k == "assert":
            return self.eval(n.a, env)
        if k == "ternary":
            c = self.eval(n.a, env)
            if isinstance(c, Opaque):
                raise CannotRender(f"line {n.line}: condition depends on {c}")
            return self.eval(n.b if c else n.c, env)
        if k == "un":
            v = self.eval(n.b, env)
            if isinstance(v, Opaque):
                return Opaque(f"{n.a}{v}")
            return (not v) if n.a == "!" else -v
        if k == "bin":
            return self._bin(n, env)
        if k == "for":
            src = self.eval(n.b, env)
            if isinstance(src, Opaque):
                raise CannotRender(f"line {n.line}: loop over {src}")
            out_list = []
            for i, item in enumerate(src):
                scope = dict(env)
                scope[n.a[0]] = item
                if len(n.a) > 1:
                    scope[n.a[1]] = i
                out_list.append(self.eval(n.c, scope))
            return out_list
        if k == "lambda":
            return lambda *args: self.eval(n.b, {**env, **dict(zip(n.a, args, strict=False))})
        if k == "call":
            return self._call(n, env)
        if k == "if":
            return self.eval(n.b, env) if self.eval(n.a, env) else None
        raise CannotRender(f"line {n.line}: cannot evaluate {k}")

    def _bin(self, n: Node, env: dict[str, Any]) -> Any:
        op = n.a
        left = self.eval(n.b, env)
        if op == "&&" and left is False:
            return False
        if op == "||" and left is True:
            return True
        if op == "??" and left is not None and not isinstance(left, Opaque):
            return left
        right = self.eval(n.c, env)
        if isinstance(left, Opaque) or isinstance(right, Opaque):
            if op == "??":
                return left
            raise CannotRender(f"line {n.line}: {op} on a value known only at deployment")
        ops = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "=~": lambda a, b: str(a).lower() == str(b).lower(),
            "!~": lambda a, b: str(a).lower() != str(b).lower(),
            "&&": lambda a, b: a and b,
            "||": lambda a, b: a or b,
            "??": lambda a, b: b,
            "<": lambda a, b: a < b,
            ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b,
            ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
            "/": lambda a, b: a // b,
            "%": lambda a, b: a % b,
        }
        return ops[op](left, right)

    def _call(self, n: Node, env: dict[str, Any]) -> Any:
        if n.a is not None:  # a method on a resource: keyVault.getSecret(...), x.listKeys()
            return Opaque(f"{_to_text(self.eval(n.a, env))}.{n.b}()")
        name = n.b
        args = [self.eval(a, env) for a in n.c]
        if name in ("resourceGroup", "subscription", "tenant", "deployment", "environment", "deployer"):
            return Opaque(f"{name}()")
        if name in ("uniqueString", "guid", "utcNow", "newGuid", "subscriptionResourceId", "resourceId"):
            return Opaque(f"{name}(...)")
        if any(isinstance(a, Opaque) for a in args) and name not in (
            "concat",
            "union",
            "empty",
            "length",
            "filter",
            "map",
            "contains",
            "string",
            "first",
            "last",
        ):
            return Opaque(f"{name}(...)")
        fns: dict[str, Any] = {
            "concat": lambda *a: (
                [x for part in a for x in part] if isinstance(a[0], list) else "".join(_to_text(x) for x in a)
            ),
            "union": lambda *a: (
                {k: v for part in a for k, v in part.items()}
                if isinstance(a[0], dict)
                else list(dict.fromkeys(x for part in a for x in part))
            ),
            "empty": lambda v: (not v) if not isinstance(v, Opaque) else False,
            "length": len,
            "contains": lambda c, x: x in c,
            "string": lambda v: v if isinstance(v, str | Opaque) else _to_text(v),
            "toLower": str.lower,
            "toUpper": str.upper,
            "replace": lambda s, a, b: s.replace(a, b),
            "split": lambda s, sep: s.split(sep),
            "take": lambda v, k: v[:k],
            "skip": lambda v, k: v[k:],
            "first": lambda v: v[0] if v else None,
            "last": lambda v: v[-1] if v else None,
            "join": lambda v, sep: sep.join(v),
            "startsWith": lambda s, p: s.lower().startswith(p.lower()),
            "endsWith": lambda s, p: s.lower().endswith(p.lower()),
            "filter": lambda v, f: [x for x in v if f(x)],
            "map": lambda v, f: [f(x) for x in v],
            "items": lambda d: [{"key": k, "value": d[k]} for k in sorted(d)],
            "objectKeys": list,
            "json": lambda s: __import__("json").loads(s),
            "format": lambda f, *a: re.sub(r"\{(\d+)\}", lambda m: _to_text(a[int(m.group(1))]), f),
            "int": int,
            "bool": bool,
            "coalesce": lambda *a: next((x for x in a if x is not None), None),
            "min": min,
            "max": max,
            "range": lambda s, c: list(range(s, s + c)),
        }
        if name not in fns:
            return Opaque(f"{name}(...)")
        return fns[name](*args)


def _to_text(v: Any) -> str:
    if isinstance(v, Opaque):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [Path("infra")]
    findings = check_paths(paths)
    for f in findings:
        print(f, file=sys.stderr)
    files = sum(len(list(p.rglob("*.bicep"))) if p.is_dir() else 1 for p in paths)
    if findings:
        print(f"bicep_lint: {len(findings)} finding(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"bicep_lint: {files} file(s) clean (syntax, decorators, names, references, module params)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
