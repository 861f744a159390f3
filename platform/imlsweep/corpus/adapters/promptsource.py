"""PromptSource adapter: a task's `templates.yaml` applied to a local copy of the dataset it names.

For each configured task (a promptsource dataset such as `super_glue/rte`): the templates in
`<templates>/<dataset>/templates.yaml` (only `original_task: true` ones with `original_task_only`),
each rendered on every example of the dataset's configured splits, read from `<data>/<dataset>/`
(`datasets.save_to_disk` folder, or JSON Lines / Parquet files with the dataset's own fields).

Row fields: `input` the rendered prompt, `outputs` the rendered target(s), `candidates` the rendered
`answer_choices` (null when the template has none), `template_id` the template's name, `example_id`
`<task>-<split>-<index>` (shared by the rows of one example, so they share a split), the split the
source config maps the example's split to. Instance-level instructions: `instruction_type` instance,
empty `definition`. A template that renders an empty prompt or target for an example skips that
example, as promptsource does; one that fails to render (undefined variable, bad index, syntax error)
rejects the task, naming the template and the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from imlsweep.corpus.adapters.files import dataset_split_rows
from imlsweep.corpus.adapters.templates import TemplateRenderer, read_templates
from imlsweep.corpus.config import PromptSourceSource, PromptSourceTask
from imlsweep.corpus.task import Example, InvalidTask, SourceTask, TaskProblem
from imlsweep.data.seeding import keyed_rng


def task_id_of(task: PromptSourceTask) -> str:
    return task.task_id or task.dataset.replace("/", "_")


def render_examples(task_id: str, templates: list, compiled: list, rows: list[dict], split_name: str,
                    corpus_split: str | None, data_file: str, renderer: TemplateRenderer, seed: int) -> list[Example]:
    examples = []
    for index, row in enumerate(rows):
        example_id = f"{task_id}-{split_name}-{index}"
        for template, template_code in zip(templates, compiled):
            rng = keyed_rng(seed, "promptsource", task_id, template.name, example_id)
            try:
                rendered = renderer.render(template_code, row, rng)
            except Exception as error:  # anything a template raises (undefined variable, bad index, type)
                raise TaskProblem(f"templates[{template.name!r}].jinja",
                                  f"fails on {split_name}[{index}] of {data_file}: {type(error).__name__}: {error}"
                                  ) from None
            if rendered.empty:
                continue
            examples.append(Example(input=rendered.prompt, outputs=rendered.targets, candidates=rendered.choices,
                                    template_id=template.name, example_id=example_id, split=corpus_split))
    return examples


def build_task(task: PromptSourceTask, source: PromptSourceSource, renderer: TemplateRenderer, seed: int
               ) -> SourceTask:
    task_id = task_id_of(task)
    templates_file = Path(source.templates) / task.dataset / "templates.yaml"
    templates = [template for template in read_templates(templates_file)
                 if template.original_task or not source.original_task_only]
    if not templates:
        kind = "with original_task: true " if source.original_task_only else ""
        raise TaskProblem("templates", f"no template {kind}in the file")
    compiled = [renderer.compile(template) for template in templates]
    examples = []
    for split_name, corpus_split in (task.splits or source.splits).items():
        data_file, rows = dataset_split_rows(Path(source.data) / task.dataset, split_name)
        examples += render_examples(task_id, templates, compiled, rows, split_name, corpus_split, data_file,
                                    renderer, seed)
    if not examples:
        raise TaskProblem("templates", "every template renders empty on every example (nothing to build)")
    return SourceTask(
        task_id=task_id,
        benchmark=source.benchmark,
        source_file=str(templates_file),
        category=task.category,
        data_source=task.data_source or task.dataset,
        instruction_type="instance",
        definition="",
        language=source.language,
        examples=examples,
        languages=(source.language,),
    )


def read_promptsource(source: PromptSourceSource, seed: int = 0) -> Iterator[SourceTask | InvalidTask]:
    renderer = TemplateRenderer()
    for task in source.tasks:
        try:
            yield build_task(task, source, renderer, seed)
        except TaskProblem as problem:
            yield problem.invalid(str(Path(source.templates) / task.dataset / "templates.yaml"), task_id_of(task))
