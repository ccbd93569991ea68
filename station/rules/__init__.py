"""Grading, disposition and liability rules as data."""

from station.rules.engine import RuleSet, RulesEngine, RulesError

__all__ = ["RuleSet", "RulesEngine", "RulesError"]
