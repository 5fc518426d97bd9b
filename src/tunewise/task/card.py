"""The task card: one YAML file that says what the task is, where its data lives, how it is
scored, and how much traffic it will carry.

Every field has a help text (``tunewise schema`` prints the JSON Schema, so editors can
complete and check cards). Unknown fields are rejected: a misspelt ``lables`` must not
silently turn into "infer the labels".
"""

from __future__ import annotations

import difflib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from tunewise.errors import TaskCardError


class Kind(StrEnum):
    classify = "classify"
    extract = "extract"
    generate = "generate"
    qa = "qa"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class SplitSpec(_Strict):
    """How one file is split into train / validation / test, and how a missing validation
    split is carved out of train. Assignment hashes each input with the seed, so it is
    deterministic, does not depend on row order, never separates identical inputs, and
    keeps every old row in its split when new rows are appended."""

    train: float = Field(0.8, ge=0, le=1, description="Fraction of examples for training.")
    validation: float = Field(
        0.1, ge=0, le=1,
        description="Fraction for validation (early stopping, few-shot selection). When `data.validation` "
        "is absent but `data.train` is given, this fraction of train becomes validation.",
    )
    test: float = Field(0.1, ge=0, le=1, description="Fraction held out for the bake-off's frozen test split.")
    seed: int = Field(0, description="Seed of the split; change it only to study split variance.")

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must add up to 1, got {total:g}")
        return self


class DataSpec(_Strict):
    """Where the examples are. Either `file` (split by `split`) or `train` and `test`
    (with an optional `validation`). Files are JSON Lines or CSV, chosen by extension."""

    train: Path | None = Field(None, description="Training examples (.jsonl or .csv), relative to the card.")
    validation: Path | None = Field(
        None, description="Validation examples; when absent, carved from `train` by `split.validation`."
    )
    test: Path | None = Field(None, description="Test examples: the frozen split every arm is scored on.")
    file: Path | None = Field(
        None, description="One file holding all examples, split deterministically by `split`."
    )
    split: SplitSpec = Field(default_factory=SplitSpec, description="Fractions and seed of the split.")
    input_field: str = Field("input", description="Name of the input column / JSON key.")
    output_field: str = Field("output", description="Name of the expected-output column / JSON key.")
    max_input_chars: int = Field(
        20_000, gt=0, description="Rows whose input is longer than this are rejected (reason `too_long`)."
    )
    max_output_chars: int = Field(
        20_000, gt=0, description="Rows whose output is longer than this are rejected (reason `too_long`)."
    )

    @model_validator(mode="after")
    def _one_layout(self) -> DataSpec:
        if self.file is not None:
            if any(p is not None for p in (self.train, self.validation, self.test)):
                raise ValueError("give either `file` or `train`/`validation`/`test`, not both")
        elif self.train is None or self.test is None:
            raise ValueError("give `file` (one file to split) or both `train` and `test`")
        return self

    def files(self) -> dict[str, Path]:
        """The files named, by role (``file``, ``train``, ``validation``, ``test``)."""
        roles = ("file", "train", "validation", "test")
        return {role: getattr(self, role) for role in roles if getattr(self, role) is not None}


class PriceSpec(_Strict):
    """Price of one model's tokens, in US dollars per million tokens."""

    input_per_million: float = Field(ge=0, description="Dollars per million input (prompt) tokens.")
    output_per_million: float = Field(ge=0, description="Dollars per million output (completion) tokens.")


class TrafficSpec(_Strict):
    """Expected traffic. Used by the verdict's total-cost-of-ownership model."""

    requests_per_month: int = Field(100_000, ge=0, description="Requests per month in production.")
    horizon_months: int = Field(12, ge=1, le=120, description="Months over which to compare total cost.")


class CostsSpec(_Strict):
    """Cost assumptions. Used by the verdict's total-cost-of-ownership model."""

    prices: dict[str, PriceSpec] = Field(
        default_factory=dict,
        description="Per-model price overrides, keyed by model name; they win over the built-in dated table.",
    )
    machine_per_hour: float = Field(
        0.10, ge=0, description="Dollars per hour of the machine that runs local models (CPU or GPU)."
    )
    labelling_per_example: float = Field(0.50, ge=0, description="Dollars to label one new example by hand.")
    engineer_per_hour: float = Field(100.0, ge=0, description="Dollars per engineering hour.")
    retrain_every_months: float = Field(
        3.0, gt=0, description="How often a new base model ships and fine-tunes are redone, in months."
    )


class GoalsSpec(_Strict):
    """What counts as good enough. Used by the verdict."""

    quality_bar: float | None = Field(
        None, description="Minimum acceptable value of the task's metric (e.g. 0.9 for 90% accuracy)."
    )
    latency_p95_ms: float | None = Field(None, gt=0, description="Maximum acceptable p95 latency in milliseconds.")


class TaskCard(_Strict):
    """A task: what it is, its data, its metric, its documents and its traffic."""

    name: str = Field(min_length=1, max_length=200, description="Short name of the task, used in reports and the store.")
    kind: Kind = Field(
        description="classify: one label from a closed set; extract: a JSON object (optionally with a schema); "
        "generate: free text; qa: short answers to questions, several references allowed."
    )
    instruction: str = Field(
        min_length=1, description="What the model is asked to do, in plain words; every prompting arm starts here."
    )
    data: DataSpec = Field(description="Where the examples are.")
    labels: list[str] | None = Field(
        None, description="classify only: the closed label set. Inferred from the training data when absent."
    )
    output_schema: dict[str, Any] | Path | None = Field(
        None,
        description="extract only: a JSON Schema every output must satisfy, inline or as a path to a .json file.",
    )
    metric: str | None = Field(
        None,
        description="A built-in metric name (accuracy, macro_f1, field_f1, json_validity, exact_match, token_f1, "
        "rouge_l) or `package.module:function` for your own. Default: accuracy (classify), field_f1 (extract), "
        "rouge_l (generate), token_f1 (qa).",
    )
    knowledge: Path | None = Field(
        None, description="A folder of documents for retrieval (RAG). Relative to the card."
    )
    traffic: TrafficSpec = Field(default_factory=TrafficSpec, description="Expected production traffic.")
    costs: CostsSpec = Field(default_factory=CostsSpec, description="Cost assumptions for the TCO model.")
    goals: GoalsSpec = Field(default_factory=GoalsSpec, description="Quality bar and latency limit, if any.")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str] | None) -> list[str] | None:
        if labels is None:
            return None
        if not labels:
            raise ValueError("an empty label list; remove `labels` to infer them from the data")
        blank = [i for i, label in enumerate(labels) if not label.strip()]
        if blank:
            raise ValueError(f"label #{blank[0]} is blank")
        seen: set[str] = set()
        dupes = [label for label in labels if label in seen or seen.add(label)]
        if dupes:
            raise ValueError(f"label {dupes[0]!r} is listed twice")
        return labels

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> TaskCard:
        if self.labels is not None and self.kind is not Kind.classify:
            raise ValueError(f"`labels` applies to kind classify only, this task is {self.kind.value}")
        if self.output_schema is not None and self.kind is not Kind.extract:
            raise ValueError(f"`output_schema` applies to kind extract only, this task is {self.kind.value}")
        if isinstance(self.output_schema, dict):
            _check_json_schema(self.output_schema)
        return self

    # -- paths are relative to the card file ---------------------------------------------

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the card are resolved against."""
        return self._base_dir

    @property
    def source(self) -> Path | None:
        """The YAML file this card was read from, if any."""
        return self._source

    def resolve(self, path: Path) -> Path:
        """A path from the card, made absolute against the card's folder."""
        return path if path.is_absolute() else (self._base_dir / path)

    def schema_dict(self) -> dict[str, Any] | None:
        """The output JSON Schema as a dict (reading it from its file if the card names one)."""
        if self.output_schema is None or isinstance(self.output_schema, dict):
            return self.output_schema
        path = self.resolve(self.output_schema)
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaskCardError(
                "output_schema file not found", where=str(path), fix="create it or give the schema inline"
            ) from None
        except json.JSONDecodeError as e:
            raise TaskCardError(
                f"output_schema is not valid JSON: {e.msg}", where=f"{path}:{e.lineno}", fix="correct the JSON"
            ) from None
        try:
            _check_json_schema(schema)
        except ValueError as e:
            raise TaskCardError(str(e), where=str(path), fix="correct the JSON Schema") from None
        return schema

    @property
    def metric_name(self) -> str:
        """The metric in force: the card's, or the default for the task kind."""
        return self.metric or DEFAULT_METRIC[self.kind]

    def to_yaml(self) -> str:
        """The card as YAML, paths as written (relative), defaults left out."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


DEFAULT_METRIC: dict[Kind, str] = {
    Kind.classify: "accuracy",
    Kind.extract: "field_f1",
    Kind.generate: "rouge_l",
    Kind.qa: "token_f1",
}


def _check_json_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise ValueError(f"output_schema is not a valid JSON Schema at {path}: {e.message}") from None


# -- reading a card from YAML ------------------------------------------------------------


def load_card(path: str | Path) -> TaskCard:
    """Read and validate a task card. Errors name the file, the line and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskCardError(
            "task card not found", where=str(path), fix="check the path, or create one with `tunewise init DATA_FILE`"
        ) from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as e:
        raise TaskCardError(f"cannot read the task card ({e.__class__.__name__})", where=str(path),
                            fix="give the path of a UTF-8 YAML file") from None
    card = parse_card(text, source=path)
    return card


def parse_card(text: str, *, source: Path | None = None) -> TaskCard:
    """Validate a task card given as YAML text; relative paths resolve against ``source``'s folder."""
    where = str(source) if source else "task card"
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        started = ""
        if e.context_mark and mark and e.context_mark.line != mark.line:
            started = f" ({e.context} at line {e.context_mark.line + 1})"
        raise TaskCardError(f"not valid YAML: {e.problem}{started}", where=f"{where}{line}",
                            fix="correct the YAML syntax at that line") from None
    if not isinstance(raw, dict):
        raise TaskCardError("a task card must be a YAML mapping of fields (name, kind, instruction, data, ...)",
                            where=where, fix="see `tunewise schema` or create one with `tunewise init DATA_FILE`")
    try:
        card = TaskCard.model_validate(raw)
    except ValidationError as e:
        raise _card_error(e, root, where) from None
    if source is not None:
        card._base_dir = source.resolve().parent
        card._source = source
    return card


def _card_error(error: ValidationError, root: yaml.Node | None, where: str) -> TaskCardError:
    """Turn pydantic's first error into one line with the YAML line number and a fix."""
    first = error.errors()[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
    field = ".".join(str(p) for p in loc) or "(card)"
    line = _yaml_line(root, loc)
    place = f"{where}:{line}" if line else where
    more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = _model_at(TaskCard, loc[:-1])
        valid = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        fix = f"did you mean `{close[0]}`?" if close else f"valid fields here: {', '.join(valid)}"
        return TaskCardError(f"unknown field `{field}`{more}", where=place, fix=fix)
    if kind == "missing":
        return TaskCardError(f"required field `{field}` is missing{more}", where=place,
                             fix=f"add `{loc[-1]}:`; see `tunewise schema` for what it holds")
    message = first["msg"].removeprefix("Value error, ")
    return TaskCardError(f"`{field}`: {message}{more}", where=place, fix="correct this field; see `tunewise schema`")


def _model_at(model: type[BaseModel], loc: list[Any]) -> type[BaseModel] | None:
    for part in loc:
        info = model.model_fields.get(str(part))
        annotation = getattr(info, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _yaml_line(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its closest existing parent)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = key if part == loc[-1] else value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line
