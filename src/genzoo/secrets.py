"""Secrets: the one list of options and environment variables whose values genzoo never writes to a file, prints or
uploads.

- :data:`SECRET_OPTIONS`: options that hold a token (left out of every recipe a run writes).
- :data:`SECRET_ENVIRONMENT`: environment variables that hold one; the token ``huggingface_hub`` stored at login
  (``hf auth login``) counts too.
- :func:`secrets_in_play` / :func:`secret_values`: the values of these in this process (and in ``args``).
- :func:`redact`: a text or a mapping with every such value replaced by ``***``; :func:`redact_argv`: a command line
  with the values of secret options replaced too.
- :func:`redact_logs`: a :class:`logging.Filter` run on every log record as it is made (genzoo's, Accelerate's,
  huggingface_hub's, ...), so that no logged line carries one; the trainer installs it.
- :func:`check_files`: refuse to upload a file that holds one (what ``genzoo push`` runs before any request).

Values shorter than :data:`MIN_SECRET_LENGTH` characters are not treated as secrets: no real token is that short,
and replacing every ``1`` in a log would hide everything else.
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

#: Options (trainer, ``genzoo push``) whose values are secrets.
SECRET_OPTIONS = ("hub_token", "token")
#: Environment variables whose values are secrets: Hugging Face tokens and the Weights & Biases key.
SECRET_ENVIRONMENT = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN", "WANDB_API_KEY")
#: Shorter values are not secrets (see the module's notes).
MIN_SECRET_LENGTH = 8
#: What a secret is replaced with.
MASK = "***"
#: Bytes read at a time when a file is searched for secrets.
CHUNK_SIZE = 1 << 20


class SecretInFileError(PermissionError):
    """A file that was about to be uploaded holds a secret (a token). A ``PermissionError``, hence an ``OSError``:
    the command line reports it as one line, exit status 2. The message names the file and where the secret comes
    from, never the secret itself."""


def _stored_tokens() -> dict[str, str]:
    """The tokens ``huggingface_hub`` keeps on disk (the active one and the named ones of ``hf auth login``), read
    directly: :func:`huggingface_hub.get_token` may exchange or refresh a token over the network."""
    from huggingface_hub import constants

    found = {}
    try:
        token = Path(constants.HF_TOKEN_PATH).read_text().strip()
        if token:
            found[token] = "the Hugging Face token stored by `hf auth login`"
    except (OSError, UnicodeDecodeError):
        pass
    try:
        stored = configparser.ConfigParser(interpolation=None)
        stored.read(constants.HF_STORED_TOKENS_PATH)
        for name in stored.sections():
            token = stored[name].get("hf_token", "").strip()
            if token:
                found.setdefault(token, f"the Hugging Face token {name!r} stored by `hf auth login`")
    except (OSError, UnicodeDecodeError, configparser.Error):
        pass
    return found


def _options(args) -> Mapping:
    if args is None:
        return {}
    return args if isinstance(args, Mapping) else vars(args)


def secrets_in_play(args=None) -> dict[str, str]:
    """The secret values in this process, each with where it comes from (for messages that must not show it).

    Args:
        args (argparse.Namespace | Mapping | None): options of a run or command; their :data:`SECRET_OPTIONS`
            count too.

    Returns:
        ``{value: "--hub_token" | "$HF_TOKEN" | ...}``, values of at least :data:`MIN_SECRET_LENGTH` characters.
    """
    found: dict[str, str] = {}
    for name in SECRET_OPTIONS:
        value = _options(args).get(name)
        if isinstance(value, str):
            found.setdefault(value.strip(), f"the value of --{name}")
    for name in SECRET_ENVIRONMENT:
        value = os.environ.get(name)
        if value:
            found.setdefault(value.strip(), f"the value of ${name}")
    for value, source in _stored_tokens().items():
        found.setdefault(value, source)
    return {value: source for value, source in found.items() if len(value) >= MIN_SECRET_LENGTH}


def secret_values(args=None) -> set[str]:
    """The secret values in this process (and in ``args``' :data:`SECRET_OPTIONS`); see :func:`secrets_in_play`."""
    return set(secrets_in_play(args))


def _longest_first(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def redact(value, secrets: Iterable[str] | None = None):
    """``value`` with every secret replaced by :data:`MASK`.

    Args:
        value: a string, or a mapping or list of them (keys and values are redacted, nested ones too); anything
            else is returned as it is.
        secrets (Iterable[str] | None): the values to hide (default: :func:`secret_values`).

    Returns:
        A redacted copy of the same kind.
    """
    values = _longest_first(secret_values() if secrets is None else secrets)
    return _redact(value, values)


def _redact(value, values: list[str]):
    if not values:
        return value
    if isinstance(value, str):
        for secret in values:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, Mapping):
        return {_redact(k, values): _redact(v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, values) for v in value)
    return value


_OPTION_NAMES = {f"--{name}" for name in SECRET_OPTIONS} | {f"--{name.replace('_', '-')}" for name in SECRET_OPTIONS}


def _secret_positions(argv: list[str]) -> list[tuple[int, bool]]:
    """``(index, inline)`` of each secret option's value in ``argv``: ``inline`` for ``--name=value``."""
    found = []
    for i, arg in enumerate(argv):
        if arg in _OPTION_NAMES and i + 1 < len(argv):
            found.append((i + 1, False))
        elif "=" in arg and arg.split("=", 1)[0] in _OPTION_NAMES:
            found.append((i, True))
    return found


def argv_secrets(argv: Iterable[str]) -> set[str]:
    """The values of the secret options (``--hub_token X``, ``--hub_token=X``, ``--token X``; ``-`` or ``_`` in the
    name) on a command line, with the secrets in play in this process: everything a line about it must not show."""
    argv = [str(a) for a in argv]
    values = {argv[i].split("=", 1)[1] if inline else argv[i] for i, inline in _secret_positions(argv)}
    return values | secret_values()


def redact_argv(argv: Iterable[str]) -> list[str]:
    """A command line fit to print: the value of every secret option is :data:`MASK`, and so is every secret in play
    anywhere in it (:func:`argv_secrets`)."""
    out = [str(a) for a in argv]
    for i, inline in _secret_positions(out):
        out[i] = out[i].split("=", 1)[0] + "=" + MASK if inline else MASK
    return redact(out)


# ----------------------------------------------------------------------------------------------------------- logs
class RedactingFilter(logging.Filter):
    """Rewrites a log record (its message, arguments and traceback) with every secret replaced by :data:`MASK`;
    lets every record through."""

    def __init__(self):
        super().__init__()
        self.secrets: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as it would
            return True
        clean = _redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = _redact(record.stack_info, self.secrets)
        return True


#: The one filter :func:`redact_logs` installs (it gathers the secrets of every call in this process).
LOG_FILTER = RedactingFilter()
_installed = False


def redact_logs(args=None) -> RedactingFilter:
    """Keep the secrets in play (and ``args``' secret options) out of every log line, whichever library logs it
    (genzoo, Accelerate, huggingface_hub, Diffusers, ...) and whichever handler prints it: :data:`LOG_FILTER` is run
    on every log record as it is made (``logging.setLogRecordFactory``, wrapping the factory in place), so no handler
    sees the secret. The secrets of every call are kept; calling it again adds, never removes. The trainer calls it.

    Args:
        args (argparse.Namespace | Mapping | None): the run's options.

    Returns:
        The filter (its ``secrets``: the values hidden, longest first).
    """
    global _installed
    LOG_FILTER.secrets = _longest_first([*LOG_FILTER.secrets, *secret_values(args)])
    if not _installed:
        make_record = logging.getLogRecordFactory()

        def redacted_record(*args, **kwargs) -> logging.LogRecord:
            record = make_record(*args, **kwargs)
            LOG_FILTER.filter(record)
            return record

        logging.setLogRecordFactory(redacted_record)
        _installed = True
    return LOG_FILTER


# ---------------------------------------------------------------------------------------------------------- files
def find_secret(path, secrets: Mapping[str, str], chunk_size: int = CHUNK_SIZE) -> str | None:
    """Where the first secret found in the file ``path`` comes from, or ``None``. The file is read in chunks of
    ``chunk_size`` bytes; a secret split across two chunks is found too.

    Args:
        path: the file.
        secrets (Mapping[str, str]): ``{value: where it comes from}``, as :func:`secrets_in_play` returns.
        chunk_size (int): bytes read at a time.
    """
    needles = [(value.encode(), source) for value, source in secrets.items() if len(value) >= MIN_SECRET_LENGTH]
    if not needles:
        return None
    overlap = max(len(needle) for needle, _ in needles) - 1
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            window = tail + chunk
            for needle, source in needles:
                if needle in window:
                    return source
            tail = window[-overlap:] if overlap else b""
    return None


def check_files(files: Iterable, secrets: Mapping[str, str], what: str = "uploaded") -> None:
    """Refuse, with :class:`SecretInFileError` naming the first file and where its secret comes from, if any of
    ``files`` holds one of ``secrets`` (``{value: source}``; a ``bytes`` entry is checked by its contents)."""
    needles = {v: s for v, s in secrets.items() if len(v) >= MIN_SECRET_LENGTH}
    for entry in files:
        name, data = entry if isinstance(entry, tuple) else (entry, None)
        if data is None:
            source = find_secret(name, needles)
        else:
            source = next((s for v, s in needles.items() if v.encode() in data), None)
        if source is not None:
            raise SecretInFileError(
                f"{name} holds {source} and would be {what}; nothing was uploaded. Remove the token from the file "
                "(or delete the file) and push again."
            )
