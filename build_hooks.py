"""Build step of the wheel: copy the templates and the npm front-end files into the package.

setuptools runs `BuildPy` in place of its `build_py` (see `[tool.setuptools.cmdclass]` in pyproject.toml).
After the usual modules and package data it copies, into `build/lib/kartoteka/`:

- `templates/` (top level of the checkout, where the team edits them) to `kartoteka/templates/`;
- htmx and Pico, as `npm ci` installed them from package-lock.json, with their licences, from
  `node_modules/` to `kartoteka/vendor/` (same relative paths, so the app's vendor route reads either tree).

It also compiles the gettext catalogues, `kartoteka/translations/<language>/LC_MESSAGES/messages.po`, to the
`.mo` files the app reads (Babel, a build requirement), so a wheel never carries a stale compiled catalogue.

Nothing is copied into the source tree, so the checkout never holds stale copies and git never sees them
(`kartoteka/templates/` and `kartoteka/vendor/` are in .gitignore all the same). An editable install
(`pip install -e`, as `make install` does) copies nothing: the app then reads `templates/` and
`node_modules/` of the checkout (`kartoteka.find_resources`). A wheel built without `node_modules/` fails
here, loudly, rather than serving pages without their styles.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
PACKAGE = "kartoteka"

# The npm files the app serves (kartoteka.web.VENDOR_FILES) and the licences that must travel with them.
VENDOR_FILES = (
    "htmx.org/dist/htmx.min.js",
    "htmx.org/LICENSE",
    "@picocss/pico/css/pico.min.css",
    "@picocss/pico/LICENSE.md",
)
# Package directories this step owns in the build: emptied before each copy, so nothing stale survives.
TARGETS = ("templates", "vendor")
CATALOGUES = "translations/*/LC_MESSAGES/messages.po"


def _wanted(path: Path) -> bool:
    """A template file, not an editor's or OS's leftover."""
    return path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in path.parts) \
        and not path.name.endswith(("~", ".swp", ".pyc"))


def package_copies(root: Path = ROOT) -> dict[str, Path]:
    """What the build adds to the package: {path inside the package: source file}; raises if any is missing."""
    templates = root / "templates"
    if not templates.is_dir():
        raise SetupError(f"{templates} is missing: build the wheel from a source checkout (pip wheel .).")
    copies = {f"templates/{path.relative_to(templates).as_posix()}": path
              for path in sorted(templates.rglob("*")) if _wanted(path.relative_to(root))}
    missing = []
    for name in VENDOR_FILES:
        source = root / "node_modules" / name
        if not source.is_file():
            missing.append(str(source))
        copies[f"vendor/{name}"] = source
    if missing:
        raise SetupError("The front-end files are not installed: " + ", ".join(missing)
                         + ". Run `make assets` (npm ci) before building the wheel.")
    return copies


def compiled_catalogues(root: Path = ROOT) -> dict[str, Path]:
    """The compiled catalogues the build writes: {path inside the package: its .po source}."""
    package = root / PACKAGE
    return {po.relative_to(package).with_suffix(".mo").as_posix(): po for po in sorted(package.glob(CATALOGUES))}


def compile_catalogue(source: Path, target: Path) -> None:
    """Write the .mo of one .po (fuzzy entries left out, as gettext's msgfmt does)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with source.open("rb") as po:
        catalog = read_po(po, locale=source.parent.parent.name)
    with target.open("wb") as mo:
        write_mo(mo, catalog)


class BuildPy(build_py):
    """setuptools' build_py, then the templates and front-end files copied into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        package_dir = Path(self.build_lib) / PACKAGE
        for target in TARGETS:
            shutil.rmtree(package_dir / target, ignore_errors=True)
        for name, source in package_copies().items():
            target = package_dir / name
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))
        for name, source in compiled_catalogues().items():
            target = package_dir / name
            self.mkpath(str(target.parent))
            compile_catalogue(source, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:  # type: ignore[override]
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return [*outputs, *self._copies()]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = super().get_output_mapping()
        if self.editable_mode:
            return mapping
        return {**mapping, **self._copies()}

    def _copies(self) -> dict[str, str]:
        package_dir = Path(self.build_lib) / PACKAGE
        made = {**package_copies(), **compiled_catalogues()}
        return {str(package_dir / name): str(source) for name, source in made.items()}
