"""PromptSource templates: reading a `templates.yaml` and rendering one template on one example.

The file is YAML with promptsource's tags: `templates:` maps ids to `!Template` objects (`name`,
`jinja`, `answer_choices`, `metadata: !TemplateMetadata {original_task, choices_in_prompt, metrics,
languages}`, `reference`, `id`). A template's `jinja` renders the prompt, `|||`, then the target;
each further `|||` starts another reference. `answer_choices` (Jinja too, options separated by `|||`)
is rendered first and given to the template as the `answer_choices` list.

Rendering is sandboxed Jinja with strict undefined variables (a misspelt field is an error, not an
empty string), plus what promptsource's templates use: the `choice` filter (one item at random, from
a seeded stream), `most_frequent` (the items of highest count), and `zip` and `enumerate`. A `|||`
inside the example's own text is protected so it cannot split the output, as promptsource does.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from imlsweep.corpus.adapters.fields import type_name
from imlsweep.corpus.task import TaskProblem

SEPARATOR = "|||"
# Stands in for a `|||` inside example text while the template renders.
PROTECTED_SEPARATOR = "\x00imlsweep-protected-separator\x00"


@dataclass(frozen=True)
class Template:
    name: str
    jinja: str
    answer_choices: str | None
    original_task: bool


class TemplateLoader(yaml.SafeLoader):
    """SafeLoader that reads promptsource's `!Template` / `!TemplateMetadata` objects as plain mappings."""


def _mapping(loader: TemplateLoader, node: yaml.Node) -> dict:
    return loader.construct_mapping(node, deep=True)


TemplateLoader.add_constructor("!Template", _mapping)
TemplateLoader.add_constructor("!TemplateMetadata", _mapping)


def parse_template(key: Any, value: Any) -> Template:
    where = f"templates[{key!r}]"
    if not isinstance(value, dict):
        raise TaskProblem(where, f"expected a !Template mapping, got {type_name(value)}")
    name = value.get("name", str(key))
    jinja = value.get("jinja")
    if not isinstance(jinja, str):
        raise TaskProblem(f"{where}.jinja", f"expected a string, got {type_name(jinja)}")
    choices = value.get("answer_choices")
    if choices is not None and not isinstance(choices, str):
        raise TaskProblem(f"{where}.answer_choices", f"expected a string, got {type_name(choices)}")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise TaskProblem(f"{where}.metadata", f"expected a !TemplateMetadata mapping, got {type_name(metadata)}")
    return Template(name=str(name), jinja=jinja, answer_choices=choices,
                    original_task=bool(metadata.get("original_task", False)))


def read_templates(path: Path) -> list[Template]:
    """The templates of one `templates.yaml`, in file order; problems name the file."""
    if not path.is_file():
        raise TaskProblem("<file>", "no templates.yaml here", str(path))
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=TemplateLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise TaskProblem("<file>", f"not a promptsource templates file: {error}", str(path)) from None
    templates = data.get("templates") if isinstance(data, dict) else None
    if not isinstance(templates, dict):
        raise TaskProblem("templates", "missing (expected a mapping of template id -> !Template)", str(path))
    try:
        return [parse_template(key, value) for key, value in templates.items()]
    except TaskProblem as problem:
        raise TaskProblem(problem.field, problem.reason, str(path)) from None


def most_frequent(items: list) -> list:
    """The items that occur most often, in order of first appearance."""
    counts = Counter(items)
    top = max(counts.values(), default=0)
    return [item for item in counts if counts[item] == top]


def protect(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(SEPARATOR, PROTECTED_SEPARATOR)
    if isinstance(value, list):
        return [protect(item) for item in value]
    if isinstance(value, dict):
        return {key: protect(item) for key, item in value.items()}
    return value


def parts(rendered: str) -> list[str]:
    return [part.replace(PROTECTED_SEPARATOR, SEPARATOR).strip() for part in rendered.split(SEPARATOR)]


@dataclass(frozen=True)
class Rendered:
    prompt: str
    targets: list[str]
    choices: list[str] | None

    @property
    def empty(self) -> bool:
        """Renders with an empty prompt or no target are skipped, as promptsource skips them."""
        return not self.prompt or not self.targets


class TemplateRenderer:
    """Compiles templates once and renders them on examples; `choice` draws from the stream passed in."""

    def __init__(self):
        self.env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self.env.filters["choice"] = lambda items: self.rng.choice(list(items))
        self.env.filters["most_frequent"] = most_frequent
        self.env.globals.update(zip=zip, enumerate=enumerate)
        self.rng = random.Random(0)

    def compile(self, template: Template):
        """(prompt template, answer-choices template or None); a syntax error names the template and line."""
        compiled = []
        for field, text in (("jinja", template.jinja), ("answer_choices", template.answer_choices)):
            if text is None:
                compiled.append(None)
                continue
            try:
                compiled.append(self.env.from_string(text))
            except TemplateSyntaxError as error:
                raise TaskProblem(f"templates[{template.name!r}].{field}",
                                  f"Jinja syntax error at line {error.lineno}: {error.message}") from None
        return tuple(compiled)

    def render(self, compiled: tuple, example: Mapping[str, Any], rng: random.Random) -> Rendered:
        """Raises whatever the template raises (undefined variable, bad index ...); the caller names the row."""
        if "answer_choices" in example:
            raise ValueError("the example has a field named answer_choices, which templates reserve")
        self.rng = rng
        variables = protect(dict(example))
        prompt_template, choices_template = compiled
        choices = None if choices_template is None else parts(choices_template.render(**variables))
        pieces = parts(prompt_template.render(**variables, answer_choices=choices))
        return Rendered(prompt=pieces[0], targets=[target for target in pieces[1:] if target], choices=choices)
