"""Declarative rules: which files a rule claims, how they group into sessions, which fields they
must carry (a pydantic model per dataset type), what is added to them and how drift is handled."""

from .dataset import Acquisition, DatasetTypes, FieldProblem, Validated
from .ruleset import Rule, RuleError, RuleSet, load_rules
from .schema import RuleFile

__all__ = [
    "Acquisition",
    "DatasetTypes",
    "FieldProblem",
    "Rule",
    "RuleError",
    "RuleFile",
    "RuleSet",
    "Validated",
    "load_rules",
]
