#!/usr/bin/env python3
"""Entry point of the cdc-platform image: secrets from files into the environment, then the command.

For every variable ``NAME_FILE`` the container is given, ``NAME`` is set to the content of
that file (one trailing newline removed) before the command runs. Compose mounts each secret
at ``/run/secrets/<secret>``; Dagster's ``EnvVar("NAME")`` and dagster.yaml's ``{env: NAME}``
then find the value in the environment, while ``docker inspect`` and ``docker compose config``
show only the file's path.

``docker compose exec`` does not pass through the entry point; prefix the command:

    docker compose exec code-location with-secrets dagster instance concurrency info

Exit status 2, with a message naming the variable, when a file is missing or empty, or when
``NAME`` and ``NAME_FILE`` are both set.
"""

from __future__ import annotations

import os
import re
import sys

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SUFFIX = "_FILE"


def secrets_from_files(environ: dict[str, str]) -> dict[str, str]:
    """The variables to add: ``NAME`` → the content of the file ``$NAME_FILE`` names.

    Raises:
        ValueError: a file cannot be read or is empty, or ``NAME`` is set as well.
    """
    out: dict[str, str] = {}
    for key, path in sorted(environ.items()):
        if not key.endswith(_SUFFIX):
            continue
        name = key[: -len(_SUFFIX)]
        if not _NAME.match(name):
            continue
        if name in environ:
            raise ValueError(f"both {name} and {key} are set: give one of them")
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read()
        except OSError as exc:
            raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
        if value.endswith("\n"):
            value = value[:-1]
            if value.endswith("\r"):
                value = value[:-1]
        if not value:
            raise ValueError(f"{key}: {path} is empty (set {name} in docker/.env, see docker/.env.example)")
        out[name] = value
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: with-secrets COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        added = secrets_from_files(dict(os.environ))
    except ValueError as exc:
        print(f"with-secrets: {exc}", file=sys.stderr)
        return 2
    os.environ.update(added)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"with-secrets: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: execvp replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
