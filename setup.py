"""Package discovery: `envs/` and `baselines/` ship as `atm_bench.envs` and `atm_bench.baselines`
(see DESIGN.md); setuptools' declarative `find` cannot rename, so list them here."""

from setuptools import find_packages, setup


def _mapped(prefix: str, where: str) -> list[str]:
    return [prefix] + [f"{prefix}.{p}" for p in find_packages(where)]


setup(packages=find_packages(include=["atm_bench", "atm_bench.*"]) + _mapped("atm_bench.envs", "envs") + _mapped("atm_bench.baselines", "baselines"))
