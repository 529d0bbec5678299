"""Make the dataset fixtures that `tests/data.rs` reads, and what Hugging Face
`datasets` makes of them.

ftui reads a fine-tuning dataset the way `datasets.load_dataset("json" | "csv" |
"parquet", data_files=...)` does, so that a `[data]` section means what the same
files mean to the book's code (DESIGN.md, "Correctness standard"). This script writes
small files in every format ftui reads, loads each with `datasets`, and commits the
rows it sees to `tests/fixtures/data/expected.json`; the Rust tests assert that ftui
reads the same rows. CI has no Python: it only reads the committed outputs.

Outputs, all in `tests/fixtures/data/`:

* `chat.jsonl`: conversations (`messages`), with an empty line that both skip.
* `broken.jsonl`: prompt/completion records whose line 3 is cut short; `datasets`
  refuses the file (recorded as an error), ftui names `broken.jsonl:3` or skips it.
* `quoted.csv`: RFC 4180 fields holding commas, doubled quotes, newlines and
  non-ASCII text. ftui reads every CSV value as a string, which is
  `load_dataset("csv", features=<every column a string>, keep_default_na=False)`.
* `bad_fields.csv`: one row with a field too many, one with a field too few.
* `records.json`: a pretty-printed JSON array (so element indices and lines differ).
* `chat.parquet` (snappy, pyarrow's default), `chat.zstd.parquet`,
  `chat.gzip.parquet`: the same table with a `messages` column stored as
  list<struct<role, content>>, int64, float32 with a null, float64, bool,
  list<string> and struct columns.
* `hub/data/train-00000-of-00001.parquet`, `hub/data/test-00000-of-00001.parquet`:
  the first 16 and next 4 rows of `sample-data/yoda_sentences.jsonl`, laid out as
  the hub's parquet datasets are (`dvgodoy/yoda_sentences` has
  `data/train-00000-of-00001.parquet`); the Rust test serves them from a local
  stand-in for the hub.
* `expected.json`: per file, the rows `datasets` gives (or its error), plus the
  book's rename of `sample-data/yoda_sentences.jsonl` (sentence -> prompt,
  translation_extra -> completion) and `train_test_split` sizes.

Run from the repository root (pyarrow and datasets pinned in tools/requirements.txt):

    .venv/bin/pip install -r tools/requirements.txt -c requirements.txt
    .venv/bin/python tools/make_data_fixtures.py

Nothing is random, so two runs write identical files.
"""

import csv
import json
import math
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "data"
YODA = ROOT / "sample-data" / "yoda_sentences.jsonl"

datasets.disable_progress_bars()
datasets.logging.set_verbosity_error()


def write(name, text):
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")


CHAT = [
    {"messages": [
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": "General Kenobi."},
    ]},
    {"messages": [
        {"role": "system", "content": "You speak like Yoda."},
        {"role": "user", "content": "Is the Force strong?"},
        {"role": "assistant", "content": "Strong, the Force is."},
    ]},
    {"messages": [
        {"role": "user", "content": "Ünïcode and \"quotes\", please: 日本語 🙂"},
        {"role": "assistant", "content": "Line one.\nLine two."},
        {"role": "user", "content": "And a third turn?"},
        {"role": "assistant", "content": "Here it is."},
    ]},
]


def chat_jsonl():
    lines = [json.dumps(r, ensure_ascii=False) for r in CHAT]
    # An empty line between records: `datasets` (and ftui) skip it silently.
    write("chat.jsonl", lines[0] + "\n" + lines[1] + "\n\n" + lines[2] + "\n")


def broken_jsonl():
    write("broken.jsonl", "".join([
        '{"prompt": "one", "completion": "uno"}\n',
        '{"prompt": "two", "completion": "dos"}\n',
        '{"prompt": "three", "completion": \n',
        '\n',
        '{"prompt": "four", "completion": "cuatro"}\n',
        '{"prompt": "five", "completion": "cinco"}\n',
    ]))


def quoted_csv():
    write("quoted.csv", "".join([
        "id,prompt,completion\n",
        "1,plain,simple\n",
        '2,"with, a comma","say ""hi"" twice"\n',
        '3,"first line\nsecond line","ends with a newline\n"\n',
        '4,"Ünïcode: 日本語","🙂, ok"\n',
        "5,,empty prompt\n",
    ]))


def bad_fields_csv():
    write("bad_fields.csv", "".join([
        "prompt,completion\n",
        "a,b\n",
        "c,d,extra\n",
        '"multi\nline",f\n',
        "too few\n",
        "g,h\n",
    ]))


def records_json():
    records = [
        {"text": "### Question: What is LoRA?\n### Answer: A low-rank adapter.", "source": "notes", "n": 1},
        {"text": "### Question: What is NF4?\n### Answer: A 4-bit data type.", "source": "notes", "n": 2},
        {"text": "Plain text, no template.", "source": "web", "n": 3},
    ]
    write("records.json", json.dumps(records, ensure_ascii=False, indent=2) + "\n")


def chat_table():
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.table({
        "id": pa.array([1, 2, 3], pa.int64()),
        "messages": pa.array([r["messages"] for r in CHAT], pa.list_(message)),
        "score": pa.array([0.5, None, 0.1], pa.float32()),
        "weight": pa.array([1.0, 2.5, -3.25], pa.float64()),
        "ok": pa.array([True, False, True], pa.bool_()),
        "tags": pa.array([["a", "b"], [], ["c"]], pa.list_(pa.string())),
        "meta": pa.array([{"source": "x", "n": 1}, {"source": "y", "n": 2}, {"source": None, "n": 3}],
                         pa.struct([("source", pa.string()), ("n", pa.int32())])),
    })


def chat_parquet():
    table = chat_table()
    pq.write_table(table, OUT / "chat.parquet")  # snappy
    pq.write_table(table, OUT / "chat.zstd.parquet", compression="zstd")
    pq.write_table(table, OUT / "chat.gzip.parquet", compression="gzip")


def yoda_rows():
    return [json.loads(line) for line in YODA.read_text(encoding="utf-8").splitlines() if line.strip()]


def hub_parquet():
    rows = yoda_rows()
    for split, part in [("train", rows[:16]), ("test", rows[16:20])]:
        path = OUT / "hub" / "data" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(part), path)


def jsonable(value):
    """Rows as JSON: floats that are not finite have no JSON form."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not representable: {value}")
    return value


def rows_of(builder, name, **kwargs):
    try:
        ds = datasets.load_dataset(builder, data_files=str(OUT / name), split="train", **kwargs)
    except Exception as e:  # what datasets says, for the record; ftui's own words differ
        while e.__cause__ is not None:  # DatasetGenerationError wraps the parser's error
            e = e.__cause__
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return {"builder": builder, "kwargs": kwargs, "columns": ds.column_names,
            "rows": [{k: jsonable(v) for k, v in r.items()} for r in ds]}


def csv_as_strings(name):
    """ftui reads every CSV value as a string (empty fields too): the same as
    telling pandas, through `datasets`, that every column is a string column."""
    with open(OUT / name, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    features = datasets.Features({column: datasets.Value("string") for column in header})
    return {"features": features, "keep_default_na": False}


def expected():
    out = {"datasets_version": datasets.__version__, "pyarrow_version": pa.__version__, "files": {}}
    files = out["files"]
    files["chat.jsonl"] = rows_of("json", "chat.jsonl")
    files["broken.jsonl"] = rows_of("json", "broken.jsonl")
    files["records.json"] = rows_of("json", "records.json")
    for name in ["quoted.csv", "bad_fields.csv"]:
        files[name] = rows_of("csv", name, **csv_as_strings(name))
        if "kwargs" in files[name]:
            files[name]["kwargs"] = {"features": "every column a string", "keep_default_na": False}
    for name in ["chat.parquet", "chat.zstd.parquet", "chat.gzip.parquet",
                 "hub/data/train-00000-of-00001.parquet", "hub/data/test-00000-of-00001.parquet"]:
        files[name] = rows_of("parquet", name)

    # The book's chapter-0 data preparation on ftui's Yoda file: rename the columns,
    # then train_test_split sizes (test = ceil(ratio * n), train = the rest).
    yoda = datasets.load_dataset("json", data_files=str(YODA), split="train")
    yoda = yoda.rename_columns({"sentence": "prompt", "translation_extra": "completion"})
    picks = [0, 1, 350, len(yoda) - 1]
    out["yoda"] = {
        "num_rows": len(yoda),
        "columns": yoda.column_names,
        "picks": {str(i): yoda[i] for i in picks},
    }
    sizes = []
    for n, ratio in [(700, 0.1), (700, 0.15), (700, 1 / 3), (5, 0.5), (3, 0.2), (20, 0.05)]:
        split = datasets.Dataset.from_dict({"i": list(range(n))}).train_test_split(test_size=ratio, seed=0)
        sizes.append({"n": n, "ratio": ratio, "train": len(split["train"]), "test": len(split["test"])})
    out["train_test_split"] = sizes
    (OUT / "expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    chat_jsonl()
    broken_jsonl()
    quoted_csv()
    bad_fields_csv()
    records_json()
    chat_parquet()
    hub_parquet()
    expected()


if __name__ == "__main__":
    main()
