"""duet on a Ray cluster: corpora through Ray Data, one model per actor.

    import ray, duet.ray
    ray.init()                                  # or ray.init(address="auto") on a cluster
    done = duet.ray.process_files(["part-0.parquet", "part-1.jsonl"], "out/", model="models/debian-summarizer",
                                  task="summarize", concurrency=4, params={"summary_length": "short"})

``Predictor`` is the callable class ``Dataset.map_batches`` runs in an actor pool: each actor
opens the model once and answers every batch it is given (``embed``: a vector per text;
``summarize`` / ``generate``: a text per row, the rows of a batch sent from threads so that the
model's scheduler decodes them together). ``process_files`` runs one pipeline per input file and
writes one output file per input, atomically (a temporary file renamed), so that a run that stops
is resumed by running it again: finished files are skipped. Outputs keep the input's rows in
order, its columns, and add the task's column.

Ray is not a dependency of duet: this module imports it when called (``pip install
"ray[data]"``). GPU actors: ``num_gpus=1`` gives each actor a GPU, and ``options`` open the model
on it (``{"execution_provider": "cuda"}``).
"""
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

TASKS = ("embed", "summarize", "generate")
PathArg = Union[str, "os.PathLike[str]"]


def _output_column(task: str) -> str:
    return {"embed": "embedding", "summarize": "summary", "generate": "generated_text"}[task]


class Predictor:
    """One duet model in one actor; ``__call__`` maps a batch (a pandas DataFrame) to the same rows
    with the task's column added."""

    def __init__(self, model: PathArg, task: str, column: str = "text", output_column: Optional[str] = None,
                 params: Optional[Dict[str, Any]] = None, options: Optional[Dict[str, Any]] = None,
                 threads: int = 8, library: Optional[PathArg] = None) -> None:
        import duet  # noqa: PLC0415 - in the actor's process

        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        self.task, self.column = task, column
        self.output_column = output_column or _output_column(task)
        self.params = dict(params or {})
        self.model = duet.Model(model, options=options, library=library)
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads)) if task != "embed" else None

    def _one(self, text: str) -> str:
        if self.task == "summarize":
            return self.model.summarize(text, **self.params).text
        return self.model.generate(text, **self.params).text

    def __call__(self, batch: Any) -> Any:
        if self.column not in batch:
            raise KeyError(f"the batch has no column {self.column!r} (columns: {', '.join(map(str, batch.columns))})")
        texts = [str(t) for t in batch[self.column]]
        out = batch.copy()
        if self.task == "embed":
            vectors = self.model.embed(texts, as_numpy=False, **self.params)
            out[self.output_column] = [list(map(float, v)) for v in vectors]
        else:
            assert self.pool is not None
            out[self.output_column] = list(self.pool.map(self._one, texts))
        return out


def _reader(path: Path, blocks: int):
    """The file as a dataset of ``blocks`` blocks (one file is one block otherwise, which one actor
    would take alone)."""
    import ray  # noqa: PLC0415

    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix == ".parquet":
        return ray.data.read_parquet(str(path)).repartition(blocks)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return ray.data.read_json(str(path), lines=True).repartition(blocks)
    raise ValueError(f"{path}: only Parquet (.parquet) and JSON lines (.jsonl) inputs are read")


def output_path(path: PathArg, out_dir: PathArg) -> Path:
    """Where ``process_files`` writes the results of ``path``: same name and format, in ``out_dir``."""
    return Path(out_dir) / Path(path).name


def process_file(path: PathArg, out_dir: PathArg, model: PathArg, task: str, column: str = "text",
                 concurrency: int = 2, batch_size: int = 64, num_cpus: float = 1, num_gpus: float = 0,
                 params: Optional[Dict[str, Any]] = None, options: Optional[Dict[str, Any]] = None,
                 threads: int = 8, library: Optional[PathArg] = None) -> Path:
    """Runs one file through an actor pool of ``concurrency`` actors (each asking Ray for
    ``num_cpus`` and ``num_gpus``) and writes its output file (skipped when it exists). Returns the
    output's path. The pool must leave Ray room for the read tasks: on a machine of N cores,
    ``concurrency * num_cpus`` below N."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415
    import ray  # noqa: PLC0415

    path = Path(path)
    target = output_path(path, out_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    dataset = _reader(path, max(1, concurrency) * 4).map_batches(
        Predictor,
        fn_constructor_kwargs={"model": str(model), "task": task, "column": column, "params": params, "options": options,
                               "threads": threads, "library": None if library is None else str(library)},
        batch_format="pandas", batch_size=batch_size, concurrency=concurrency, num_cpus=num_cpus, num_gpus=num_gpus,
    )
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        if target.suffix.lower() == ".parquet":
            writer = None
            for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(str(partial), table.schema)
                writer.write_table(table)
            if writer is None:
                pq.write_table(pa.table({}), str(partial))
            else:
                writer.close()
        else:
            with open(partial, "w", encoding="utf-8") as f:
                for batch in dataset.iter_batches(batch_format="pandas", batch_size=None):
                    if len(batch):
                        text = batch.to_json(orient="records", lines=True, force_ascii=False)
                        f.write(text if text.endswith("\n") else text + "\n")
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()
    return target


def process_files(paths: Iterable[PathArg], out_dir: PathArg, model: PathArg, task: str,
                  **kwargs: Any) -> List[Path]:
    """``process_file`` for each path in turn (files already done are skipped, so an interrupted
    run resumes where it stopped). Returns the output paths, in order."""
    return [process_file(p, out_dir, model, task, **kwargs) for p in paths]


def sequential(texts: Sequence[str], model: PathArg, task: str, params: Optional[Dict[str, Any]] = None,
               options: Optional[Dict[str, Any]] = None, library: Optional[PathArg] = None) -> List[Any]:
    """The same task on one model in this process, text by text: what a pipeline's outputs equal."""
    import duet  # noqa: PLC0415

    m = duet.Model(model, options=options, library=library)
    params = dict(params or {})
    if task == "embed":
        return [list(map(float, m.embed([t], as_numpy=False, **params)[0])) for t in texts]
    if task == "summarize":
        return [m.summarize(t, **params).text for t in texts]
    return [m.generate(t, **params).text for t in texts]
