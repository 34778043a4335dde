"""Error messages a person can act on, and bounded memory on pathological cells: CSV places as
the line an editor shows, unclosed quotes where they open, unknown ids listed, the KG file
named for an empty KG, another encoding suggested and read, look-alike ids named (and merged
only on request), a 50 MB cell refused without holding it several times."""
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hybridrec.cli_args import run_cli
from hybridrec.data import load_csv, split_from_files
from hybridrec.data.__main__ import main as data_main
from hybridrec.data.errors import DataError
from hybridrec.data.tabular import normal_id, read_table

EX = Path(__file__).resolve().parents[2] / "kg" / "examples"


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def test_places_are_editor_lines_with_the_data_row(tmp_path):
    # Line 1 header, 2 data, 3 blank, 4-5 one quoted cell over two lines, 6 the bad row.
    ratings = write(tmp_path, "ratings.csv", 'user_id,item_id,rating\nu1,i1,5\n\n'
                                             'u2,"i2\nsecond line",4\nu3,i3,five\n')
    with pytest.raises(DataError, match=r"ratings\.csv line 6 \(row 3\), column 'rating': a "
                                        r"number, got 'five'"):
        load_csv(ratings)
    table = read_table(write(tmp_path, "ok.csv", "a,b\n\n1,2\n\n\n3,4\n"), "a table")
    assert table.attrs["lines"].tolist() == [3, 6] and table.index.tolist() == [1, 2]


def test_an_unclosed_quote_is_named_where_it_opens(tmp_path):
    path = write(tmp_path, "quote.csv", 'user_id,item_id\nu1,i1\nu2,"i2\nu3,i3\nu4,i4\n')
    with pytest.raises(DataError, match=r"quote\.csv line 3: a closing quote for the quoted "
                                        r"field that opens here"):
        read_table(path, "an interactions table")


def test_unknown_ids_are_listed_with_their_count(tmp_path):
    inter = write(tmp_path, "inter.csv", "user_id,item_id\n" + "".join(
        f"u{k},{item}\n" for k, item in enumerate(("i1", "x1", "x2", "x1", "x3", "x4", "x5",
                                                    "x6"))))
    items = write(tmp_path, "items.csv", "item_id\ni1\n")
    with pytest.raises(DataError, match=r"inter\.csv line 3 \(row 2\), column 'item_id': an "
                                        r"item listed in .*items\.csv, got 'x1' \(7 such rows; "
                                        r"6 unknown: 'x1', 'x2', 'x3', 'x4', 'x5' and 1 more\)"):
        load_csv(inter, items=items)


def test_an_empty_kg_names_the_kg_file_not_the_link_table(tmp_path):
    empty = write(tmp_path, "graph.ttl", "")
    with pytest.raises(DataError) as err:
        load_csv(EX / "interactions.csv", items=EX / "items.csv", kg=empty,
                 links=EX / "links.csv")
    assert str(err.value).startswith(f"{empty}: a knowledge graph with at least one triple")


def test_another_encoding_is_suggested_and_then_read(tmp_path, capsys):
    latin = write(tmp_path, "latin.csv", "user_id,item_id\nu1,caf\u00e9\n\nu2,th\u00e9\n",
                  encoding="latin-1")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(data_main, ["info", "--interactions", str(latin)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert f"{latin} line 2: UTF-8 text, got byte 0xe9 at byte offset 22" in err
    assert "--encoding latin-1" in err
    assert data_main(["info", "--interactions", str(latin), "--encoding", "latin-1",
                      "--json"]) == 0
    assert load_csv(latin, encoding="latin-1").items.ids == ("caf\u00e9", "th\u00e9")
    # Split files take the same encoding.
    data = load_csv(latin, encoding="latin-1")
    train = write(tmp_path, "train.csv", "user_id,item_id\nu1,caf\u00e9\n", encoding="latin-1")
    test = write(tmp_path, "test.csv", "user_id,item_id\nu2,th\u00e9\n", encoding="latin-1")
    assert len(split_from_files(data, train, None, test, encoding="latin-1").test) == 1


LOOK_ALIKES = {"nfc": "caf\u00e9", "nfd": "cafe\u0301", "zero-width": "m0\u200b1",
               "bidi": "\u202em01"}


def test_look_alike_ids_are_named_and_kept_apart_unless_normalised(tmp_path, caplog):
    rows = "".join(f"u{k},{item}\n" for k, item in enumerate(
        [*LOOK_ALIKES.values(), "m01"]))
    inter = write(tmp_path, "looks.csv", "user_id,item_id\n" + rows)
    with caplog.at_level(logging.WARNING, logger="hybridrec"):
        data = load_csv(inter)
    assert data.num_items == 5  # never silently merged
    warning = caplog.text
    assert "looks.csv" in warning and "--normalize-ids" in warning
    for shown in (r"'caf\xe9'", r"'cafe\u0301'", r"'m0\u200b1'", r"'\u202em01'"):
        assert shown in warning, shown
    merged = load_csv(inter, normalize_ids=True)
    assert sorted(merged.items.ids) == ["caf\u00e9", "m01"]
    assert normal_id("\u2066cafe\u0301\u2069") == "caf\u00e9"


def test_a_50_mb_cell_is_refused_without_holding_it_several_times(tmp_path):
    """Measured in a fresh process: the peak resident memory rises by at most 200 MB while a
    50 MB one-cell line (and a 50 MB quoted cell over many lines) is refused."""
    one_line = tmp_path / "one_line.csv"
    with open(one_line, "w") as f:
        f.write("user_id,item_id,note\nu1,i1,ok\nu2,i2,")
        f.write("x" * 50_000_000)
        f.write("\nu3,i3,ok\n")
    many_lines = tmp_path / "many_lines.csv"
    with open(many_lines, "w") as f:
        f.write('user_id,item_id,note\nu1,i1,ok\nu2,i2,"')
        f.writelines("y" * 99 + "\n" for _ in range(500_000))
        f.write('"\nu3,i3,ok\n')
    script = textwrap.dedent("""
        import resource, sys
        from hybridrec.data.errors import DataError
        from hybridrec.data.tabular import read_table
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_table(sys.argv[1], "an interactions table")
        except DataError as err:
            print(err)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    for path, message in ((one_line, "line 3: lines of at most 8,388,608 characters"),
                          (many_lines, "line 3: fields of at most 131,072 characters")):
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        error, extra_mb = done.stdout.splitlines()
        assert error.startswith(f"{path} {message}")
        assert int(extra_mb) <= 200, extra_mb
