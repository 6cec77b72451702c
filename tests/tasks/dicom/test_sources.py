"""Sources: local folder and glob, fsspec (file://, memory://), DICOMweb (real Orthanc, integration)."""

from __future__ import annotations

import pickle
from pathlib import Path

import fsspec
import pytest

from tasks.dicom.sources import (
    DicomSource,
    DicomWebSource,
    FolderSource,
    FsspecSource,
    SourceFile,
    open_source,
    parse_multipart,
)
from tests.tasks.dicom.conftest import write_series


def _tree(tmp_path: Path) -> list[Path]:
    a = write_series(tmp_path / "p1" / "s1", 3)
    b = write_series(tmp_path / "p2" / "deep" / "s2", 2)
    (tmp_path / "p2" / "notes.txt").write_text("not dicom")
    return a + b + [tmp_path / "p2" / "notes.txt"]


def test_folder_lists_recursively_with_stat(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    src = open_source(str(tmp_path))
    assert isinstance(src, FolderSource) and isinstance(src, DicomSource)
    listed = sorted(src.list_files())
    assert [s.path for s in listed] == sorted(str(p) for p in files)
    assert all(s.size == Path(s.path).stat().st_size and s.mtime for s in listed)
    assert src.read_bytes(listed[0].path) == Path(listed[0].path).read_bytes()


def test_glob(tmp_path: Path) -> None:
    _tree(tmp_path)
    src = open_source(str(tmp_path / "**" / "im*"))
    assert len(list(src.list_files())) == 5
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list(open_source(str(tmp_path / "missing")).list_files())


def test_fsspec_file_url(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    src = open_source(f"file://{tmp_path}")
    assert isinstance(src, FsspecSource)
    listed = sorted(src.list_files())
    assert len(listed) == len(files)
    assert all(s.path.startswith("file://") and s.size and s.mtime for s in listed)
    first = listed[0]
    assert src.read_bytes(first.path) == Path(first.path.removeprefix("file://")).read_bytes()
    assert pickle.loads(pickle.dumps(src)).spec == src.spec


def test_fsspec_memory_url(tmp_path: Path) -> None:
    files = write_series(tmp_path, 2)
    fs = fsspec.filesystem("memory")
    for f in files:
        fs.pipe(f"/archive-test/x/{f.name}", f.read_bytes())
    src = open_source("memory://archive-test")
    listed = sorted(src.list_files())
    assert [s.size for s in listed] == [f.stat().st_size for f in files]
    assert src.read_bytes(listed[1].path) == files[1].read_bytes()
    assert len(list(open_source("memory://archive-test/x/im000*").list_files())) == 2


def test_dicomweb_spec_and_multipart() -> None:
    src = open_source("dicomweb+http://127.0.0.1:8042/dicom-web")
    assert isinstance(src, DicomWebSource) and src.root == "http://127.0.0.1:8042/dicom-web"
    body = b"--XX\r\nContent-Type: application/dicom\r\n\r\nAB\r\nCD\r\n--XX--\r\n"
    assert parse_multipart(body, 'multipart/related; type="application/dicom"; boundary=XX') == [b"AB\r\nCD"]
    with pytest.raises(ValueError, match="empty"):
        open_source(" ")


@pytest.mark.integration
def test_dicomweb_against_orthanc(tmp_path: Path) -> None:
    from tests.services.orthanc import orthanc

    files = write_series(tmp_path / "s", 4) + write_series(tmp_path / "t", 2, implicit=True)
    with orthanc() as server:
        for f in files:
            server.upload(f.read_bytes())
        src = open_source(f"dicomweb+{server.url}/dicom-web")
        listed = sorted(src.list_files())
        assert len(listed) == 6
        assert all(s.size is None and "/instances/" in s.path for s in listed)
        import pydicom

        by_uid = {pydicom.dcmread(f).SOPInstanceUID: f for f in files}
        for s in listed:
            data = src.read_bytes(s.path)
            ds = pydicom.dcmread(__import__("io").BytesIO(data))
            assert ds.SOPInstanceUID == s.path.rsplit("/", 1)[1]
            assert ds.PixelData == pydicom.dcmread(by_uid[ds.SOPInstanceUID]).PixelData
        study, series = listed[0].path.split("/studies/")[1].split("/series/")
        meta = src.metadata(study, series.split("/")[0])  # type: ignore[attr-defined]
        assert len(meta) in (2, 4) and all("00080018" in m for m in meta)


def test_folder_listing_is_in_path_order_and_streams_stat_later(tmp_path: Path) -> None:
    """Names that sort around the separator ('a.dcm' < 'a/x' < 'a0'), listed in exact string order;
    ``list_paths`` skips the stat and ``read_files`` fills it in from the open file."""
    for rel in ("a/x", "a/y/z", "a.dcm", "a0", "a-b/c", "b", "A/q", "a/ä"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode() * 3)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    src = FolderSource(str(tmp_path))
    paths = [s.path for s in src.list_files()]
    assert paths == sorted(paths) and len(paths) == 8 and src.lists_in_order
    bare = list(src.list_paths())
    assert [s.path for s in bare] == paths and all(s.size is None and s.mtime is None for s in bare)
    assert list(src.iter_paths()) == paths
    got = list(src.read_files(bare + [SourceFile(str(tmp_path / "gone"))]))
    for (sf, data), path in zip(got, [*paths, str(tmp_path / "gone")], strict=True):
        if path.endswith("gone"):
            assert isinstance(data, OSError)
            continue
        assert data == Path(path).read_bytes() and sf.size == len(data) and sf.mtime == Path(path).stat().st_mtime


def test_read_files_with_stale_listed_size(tmp_path: Path) -> None:
    """A file that grew or shrank since it was listed is read whole."""
    f = tmp_path / "f"
    f.write_bytes(b"x" * 5000)
    src = FolderSource(str(tmp_path))
    for listed in (1, 4999, 5000, 5001, 10**6):
        ((sf, data),) = list(src.read_files([SourceFile(str(f), listed, 1.0)]))
        assert data == b"x" * 5000 and sf.size == listed
