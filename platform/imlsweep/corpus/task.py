"""What an adapter hands the build: a task read from its source, a rejected task, or a skipped one."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Example:
    """One source row; `outputs` holds every reference, `candidates` the options (or None).

    `split` is the corpus split the source itself gives the row (its own train / dev / test files,
    mapped by the source config), or None when the build splits the task's rows by position."""

    input: str
    outputs: list[str]
    example_id: str
    candidates: list[str] | None = None
    template_id: str | None = None
    split: str | None = None


@dataclass
class SourceTask:
    task_id: str
    benchmark: str
    source_file: str
    category: str
    data_source: str
    instruction_type: str
    definition: str
    language: str
    examples: list[Example]
    positive_examples: list[dict] = field(default_factory=list)
    negative_examples: list[dict] = field(default_factory=list)
    # The role the source's own split files give the task: "test" (an eval task) or None.
    source_role: str | None = None
    # Every language the task uses (input, output, instruction), for the language filter.
    languages: tuple[str, ...] = ()


@dataclass
class InvalidTask:
    """A task the build rejects; `field` is the dotted path of the offending value in the source."""

    source_file: str
    task_id: str
    field: str
    reason: str

    def message(self) -> str:
        return f"{self.source_file}: task {self.task_id}: field {self.field}: {self.reason}"

    def as_record(self) -> dict:
        return {"file": self.source_file, "task_id": self.task_id, "field": self.field, "reason": self.reason}


@dataclass
class SkippedTask:
    """A task the source itself leaves out (e.g. SuperNI's excluded_tasks.txt); counted, never built."""

    task_id: str
    reason: str


class TaskProblem(Exception):
    """Raised while parsing one task; the adapter turns it into an InvalidTask. `file` names the file
    at fault when a task is read from several (a template file, one of its split files)."""

    def __init__(self, field: str, reason: str, file: str | None = None):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.file = file

    def invalid(self, default_file: str, task_id: str) -> InvalidTask:
        return InvalidTask(self.file or default_file, task_id, self.field, self.reason)
