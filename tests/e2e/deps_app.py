"""The react-web project with a dependency added, for the dependency tests and the benchmark:
its package.json with extra packages, and an App that imports one and renders what it returns.

`clsx` is one of the common packages baked into the image's npm cache (the fast path, no
registry request); `left-pad` is not, so it comes from the registry.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "sandbox" / "templates" / "react-web"
MISSING = "@preview-nonexistent/nope-xyz"

# (package, spec, import line, the JSX expression rendered into #dep, what it renders)
CLSX = ("clsx", "^2.1.0", "import clsx from 'clsx'", "clsx('a', { b: true })", "a b")
LEFT_PAD = ("left-pad", "1.3.0", "import leftPad from 'left-pad'", "leftPad('7', 3, '0')", "007")


def package_json(**extra: str) -> str:
    """The template's package.json with `extra` ({name: spec}) added to its dependencies."""
    manifest = json.loads((TEMPLATE / "package.json").read_text())
    manifest["dependencies"] = {**manifest["dependencies"], **extra}
    return json.dumps(manifest, indent=2) + "\n"


def app_using(title: str, import_line: str, expression: str) -> str:
    """The template's App, titled `title`, rendering `expression` into `<p id="dep">`."""
    return f"""import {{ useState }} from 'react'
{import_line}

export default function App() {{
  const [count, setCount] = useState(0)
  return (
    <main>
      <h1 id="title">{title}</h1>
      <p id="dep">{{{expression}}}</p>
      <button id="counter" type="button" onClick={{() => setCount((n) => n + 1)}}>
        count is {{count}}
      </button>
    </main>
  )
}}
"""


def adding(package: tuple[str, ...], title: str) -> list[dict[str, str]]:
    """One patch's changes that add `package` to package.json and render it in App.jsx."""
    name, spec, import_line, expression, _ = package
    return [
        {"path": "package.json", "content": package_json(**{name: spec})},
        {"path": "src/App.jsx", "content": app_using(title, import_line, expression)},
    ]


def shared_install_fingerprint(template: Path = TEMPLATE) -> tuple[list[str], bytes]:
    """The shared install's top-level entries and its npm record: what an install into a
    workspace must never change."""
    modules = template / "node_modules"
    return sorted(p.name for p in modules.iterdir()), (modules / ".package-lock.json").read_bytes()
