"""Input files: path expansion, transparent gzip/zstd decompression, and content sniffing.

Formats are detected from content, never from the file name; compression is detected from the
magic bytes too (a `.json` file that is really gzip still loads).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from oncall.ingest import parquet

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PARQUET_MAGIC = b"PAR1"

HEAD_BYTES = 256 * 1024


class SourceError(Exception):
    """A file cannot be read at all (missing, unreadable, corrupt compression)."""


def expand_paths(args: list[str]) -> list[Path]:
    """FILE, DIR (recursive, sorted) or GLOB arguments to a list of files, in a stable order."""
    out: list[Path] = []
    seen: set[Path] = set()
    for arg in args:
        p = Path(arg)
        try:
            p.stat()
        except FileNotFoundError:
            pass  # a glob, or missing: said below
        except OSError as exc:
            raise SourceError(f"{arg}: cannot reach it ({exc.strerror}: a directory on its way cannot be read); "
                              "check the permissions along the path (namei -l)") from None
        if p.is_dir():
            found = _files_under(p)
        elif p.is_file():
            found = [p]
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                _refused_on_the_way(arg)
                raise SourceError(f"{arg}: no such file, directory or matching glob")
            found = []
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    found.extend(_files_under(mp))
                elif mp.is_file():
                    found.append(mp)
        for f in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _files_under(root: Path) -> list[Path]:
    """Every file under a directory, sorted; a directory that cannot be listed is an error naming it
    (Path.rglob skips it without a word, and its files would be missing from the incident)."""
    refused: list[OSError] = []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=refused.append):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    if refused:
        exc = refused[0]
        raise SourceError(f"{exc.filename or root}: cannot list the directory ({exc.strerror or exc}); check its "
                          f"permissions (ls -ld), or name the files to load; nothing was loaded")
    return sorted(f for f in found if f.is_file() and not _hidden(f, root))


def _refused_on_the_way(pattern: str) -> None:
    """A glob with no match because a directory on its way cannot be listed says so."""
    fixed = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
    for d in [fixed, *fixed.parents]:
        if d.is_dir():
            if not os.access(d, os.R_OK | os.X_OK):
                raise SourceError(f"{d}: cannot list the directory (permission denied), so {pattern} matches "
                                  "nothing; check its permissions (ls -ld)")
            return


def _hidden(path: Path, root: Path) -> bool:
    rel = path.relative_to(root)
    return any(part.startswith(".") for part in rel.parts)


def compression_of(path: Path) -> str | None:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(GZIP_MAGIC):
        return "gzip"
    if magic.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading decompressed bytes.

    A compressed stream that ends early (a copy taken while the exporter was writing, a download
    cut short) raises SourceError("truncated gzip/zstd stream") when the reader reaches its end,
    whichever reader that is: the file fails whole (its transaction rolls back), never loading the
    lines before the cut as if they were all, never read as an empty file.
    """
    comp = compression_of(path)
    if comp == "gzip":
        return io.BufferedReader(_Checked(gzip.open(path, "rb"), path, "gzip"), buffer_size=1 << 20)
    if comp == "zstd":
        return io.BufferedReader(_ZstdReader(open(path, "rb"), path), buffer_size=1 << 20)
    return open(path, "rb")


TRUNCATED_MARK = ": the file ends before its compressed data does"


class TruncatedStream(SourceError):
    """A gzip or zstd file that ends before its compressed data does."""


def truncated(path: Path, comp: str, detail: str = "") -> TruncatedStream:
    why = f" ({detail})" if detail else ""
    return TruncatedStream(f"{path}: truncated {comp} stream{TRUNCATED_MARK}{why}; "
                       "nothing from it was loaded (copy it again once the writer has finished)")


class _Checked(io.RawIOBase):
    """A decompressing reader whose errors (gzip's EOFError for a cut stream, a corrupt block) become
    SourceError naming the file."""

    def __init__(self, inner: IO[bytes], path: Path, comp: str) -> None:
        self.inner, self.path, self.comp = inner, path, comp

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        try:
            data = self.inner.read(len(buf))
        except EOFError as exc:
            raise truncated(self.path, self.comp, str(exc)) from None
        except (OSError, zlib.error) as exc:
            raise SourceError(f"{self.path}: corrupt {self.comp} stream: {exc}") from None
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


class _ZstdReader(io.RawIOBase):
    """zstd frames one after another; a frame still open at the end of the file is a truncated stream
    (zstandard's stream_reader returns what it has and says nothing)."""

    def __init__(self, fh: IO[bytes], path: Path) -> None:
        import zstandard

        self.fh, self.path = fh, path
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._error = zstandard.ZstdError
        self._out = b""
        self._pos = 0
        self._open_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while self._pos >= len(self._out):
            chunk = self.fh.read(1 << 20)
            if not chunk:
                if self._open_frame:
                    raise truncated(self.path, "zstd")
                return 0
            self._out, self._pos = self._decompress(chunk), 0
        n = min(len(buf), len(self._out) - self._pos)
        buf[:n] = self._out[self._pos: self._pos + n]
        self._pos += n
        return n

    def _decompress(self, data: bytes) -> bytes:
        parts = []
        try:
            while data:
                self._open_frame = True
                parts.append(self._obj.decompress(data))
                if not self._obj.eof:
                    break
                data = self._obj.unused_data  # the next frame starts here
                self._obj = self._dctx.decompressobj()
                self._open_frame = False
        except self._error as exc:
            raise SourceError(f"{self.path}: corrupt zstd stream: {exc}") from None
        return b"".join(parts)

    def close(self) -> None:
        self.fh.close()
        super().close()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Head:
    """What detection sees: the first bytes (decompressed) and, when they parse, the first values."""

    data: bytes
    complete: bool  # the whole file fits in `data`
    text: str | None = None  # data decoded as UTF-8 (None if it is not text)
    first_line_obj: Any = None  # first non-empty line parsed as JSON (JSON Lines / console dumps)
    doc: Any = None  # the whole head parsed as one JSON document, when complete and valid
    is_parquet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def read_head(path: Path) -> Head:
    try:
        with open(path, "rb") as raw:
            if raw.read(4) == PARQUET_MAGIC:
                # Detection looks at the columns: a Phoenix dataframe, a LangSmith bulk export …
                return Head(data=b"", complete=False, is_parquet=True,
                            extra={"columns": [name for name, _ in parquet.columns(path)]})
        with open_binary(path) as fh:
            data = fh.read(HEAD_BYTES + 1)
    except SourceError:
        raise
    except (OSError, EOFError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    except Exception as exc:  # zstandard raises its own error type for corrupt frames
        raise SourceError(f"{path}: cannot decompress: {exc}") from None
    complete = len(data) <= HEAD_BYTES
    data = data[:HEAD_BYTES]
    head = Head(data=data, complete=complete)
    try:
        head.text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the head boundary is fine; invalid UTF-8 earlier is not text.
        if not complete and exc.start >= len(data) - 4:
            head.text = data[: exc.start].decode("utf-8", errors="strict")
        else:
            head.text = data.decode("utf-8", errors="replace")
            head.extra["invalid_utf8"] = True
    text = head.text.lstrip("\ufeff")
    if complete:
        head.doc = _json_or_none(text, head)
    for line in text.splitlines():
        if line.strip():
            head.first_line_obj = _json_or_none(line, head)
            break
    return head


def _json_or_none(text: str, head: Head) -> Any:
    """Detection's parse: None for anything that is not JSON, nested too deep included (the
    importer then reports the record at its line; detection must never crash the load)."""
    try:
        return json.loads(text)
    except ValueError:
        return None
    except RecursionError:
        head.extra["too_deep"] = True  # said when the format cannot be told
        return None


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line bytes without the newline) for every line of the file."""
    with open_binary(path) as fh:
        reader = io.BufferedReader(fh, buffer_size=1 << 20) if not isinstance(fh, io.BufferedReader) else fh
        for n, line in enumerate(reader, start=1):
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            yield n, line


def iter_line_blocks(path: Path, block_bytes: int = 32 << 20) -> Iterator[tuple[int, memoryview]]:
    """(1-based number of the block's first line, bytes of whole lines) for the whole file.

    Each block is about `block_bytes` of (decompressed) input cut after a newline, without that
    final newline; its lines are split on b"\\n" exactly as iter_lines() splits them (a trailing
    b"\\r" is left on the line). For importers that hand whole blocks to Arrow and DuckDB instead
    of making a Python object per line. Each block is a view of its own buffer (read into once,
    never copied, never reused: the consumer may keep it), so it can be wrapped without a copy.
    """
    with open_binary(path) as fh:
        first = 1
        carry = b""
        while True:
            buf = bytearray(len(carry) + block_bytes)
            buf[:len(carry)] = carry
            filled = len(carry)
            view = memoryview(buf)
            while filled < len(buf):
                n = fh.readinto(view[filled:])
                if not n:
                    break
                filled += n
            if filled == len(carry):  # end of file
                break
            cut = buf.rfind(b"\n", 0, filled)
            if cut < 0:  # a line longer than the block: read on
                carry = bytes(view[:filled])
                continue
            carry = bytes(view[cut + 1:filled])
            yield first, view[:cut]
            first += buf.count(b"\n", 0, cut) + 1
        if carry:
            yield first, memoryview(carry)


def read_all_text(path: Path) -> str:
    """The whole (decompressed) file as text; invalid UTF-8 raises SourceError naming the offset."""
    with open_binary(path) as fh:
        data = fh.read()
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(f"{path}:{line}: invalid UTF-8 at byte offset {exc.start}") from None


def file_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
