"""Reading a hook's #! line (issue 14, item 6): the interpreter is named when it cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysup.service.hooks import HookError, hook_argv, missing_interpreter, shebang


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"#!/bin/sh\necho", ("/bin/sh", None)),
        (b"#! /usr/bin/env python3 \n", ("/usr/bin/env", "python3")),
        (b"#!/bin/bash -e -u\n", ("/bin/bash", "-e -u")),
        (b"#!/bin/sh\r\n", ("/bin/sh\r", None)),
        (b"#!\n", None),
        (b"echo hi\n", None),
    ],
)
def test_shebang_is_split_like_the_kernel(head: bytes, expected: object) -> None:
    assert shebang(head) == expected


def hook(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "init"
    path.write_bytes(body)
    path.chmod(0o755)
    return path


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    """Fails on the old code: hook_argv returned [hook] and the spawn failed with "No such file or
    directory: '<hook>'", naming the hook, which exists."""
    path = hook(tmp_path, b"#!/hab/pkgs/core/bash/bin/bash\necho hi\n")
    with pytest.raises(HookError) as info:
        hook_argv(path)
    assert str(info.value) == (
        f"{path}: the interpreter /hab/pkgs/core/bash/bin/bash named by its #! line does not exist"
    )


def test_windows_line_endings_are_named_as_the_cause(tmp_path: Path) -> None:
    path = hook(tmp_path, b"#!/bin/sh\r\necho hi\r\n")
    with pytest.raises(HookError, match=r"'/bin/sh\\r'.*Windows line endings"):
        hook_argv(path)


def test_an_interpreter_that_is_not_executable(tmp_path: Path) -> None:
    (tmp_path / "interp").write_text("")
    path = hook(tmp_path, f"#!{tmp_path}/interp\n".encode())
    assert "is not executable" in (missing_interpreter(path, path.read_bytes()) or "")
    assert missing_interpreter(path, b"#!/bin/sh\n") is None
    assert missing_interpreter(path, b"no shebang\n") is None


def test_hooks_that_can_run_keep_their_argv(tmp_path: Path) -> None:
    assert hook_argv(hook(tmp_path, b"#!/bin/sh\n")) == [str(tmp_path / "init")]
    assert hook_argv(hook(tmp_path, b"echo no shebang\n")) == ["/bin/sh", str(tmp_path / "init")]
