"""The automatic judge: a client for any OpenAI-compatible chat endpoint and its prompt."""

from __future__ import annotations

from ml.judge.client import JudgeConfig, JudgeResult, JudgeRun, JudgeSummary, judge_many, judge_pair
from ml.judge.prompt import ParsedScore, parse_score

__all__ = [
    "JudgeConfig",
    "JudgeResult",
    "JudgeRun",
    "JudgeSummary",
    "ParsedScore",
    "judge_many",
    "judge_pair",
    "parse_score",
]
