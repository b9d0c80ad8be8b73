"""How long a prompt each endpoint takes: from its ``context_tokens`` setting, or asked of it.

``--estimate`` checks every request against these. Asking is one cheap GET per server and never
fails the estimate: no network, an error or an answer without a context length just leaves the
context unknown, with a note saying why.

What servers report (``GET {api_base}/models``):

- vLLM (and SGLang): ``data[i].max_model_len``, the server's ``--max-model-len``.
- llama.cpp server: ``data[i].meta.n_ctx`` in newer builds; otherwise ``GET /props`` (at the
  server root) ``default_generation_settings.n_ctx``, the context of one slot. ``meta.n_ctx_train``
  is what the model was trained for, not what the server allocated: used only as a last resort,
  and said so.
- OpenAI, DeepSeek, DashScope, Moonshot and Ollama's ``/v1/models`` give no context length: set
  ``context_tokens`` on the endpoint to have it checked.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..config.models import DistillConfig, EndpointConfig, display_url
from .transport import proxy_for

__all__ = ["PROBE_TIMEOUT_S", "ContextLimit", "context_limits", "probe_context"]

PROBE_TIMEOUT_S = 3.0
_MAX_BODY = 4 << 20  # a model list is small; a huge body is not one


@dataclass(frozen=True)
class ContextLimit:
    """An endpoint's context length in tokens (None: unknown), where it came from, or why not."""

    tokens: int | None
    source: str = ""
    note: str = ""


def _get_json(url: str, key: str | None, timeout_s: float) -> Any:
    """GET ``url`` as JSON, through the environment's proxy (never for loopback)."""
    proxy = proxy_for(url)
    scheme = urllib.parse.urlsplit(url).scheme
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({scheme: proxy} if proxy else {})
    )
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if key:
        request.add_unredirected_header("Authorization", f"Bearer {key}")
    with opener.open(request, timeout=timeout_s) as resp:
        return json.loads(resp.read(_MAX_BODY))


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _card(body: Any, model: str) -> dict[str, Any] | None:
    """The model's entry of a ``/models`` list (the only entry when none has its id)."""
    data = body.get("data") if isinstance(body, dict) else None
    cards = [c for c in data if isinstance(c, dict)] if isinstance(data, list) else []
    for c in cards:
        if c.get("id") == model:
            return c
    return cards[0] if len(cards) == 1 else None


def _server_root(api_base: str) -> str:
    """``http://host:8080/v1`` -> ``http://host:8080`` (llama.cpp serves /props there)."""
    return api_base[: -len("/v1")] if api_base.endswith("/v1") else api_base


def probe_context(ep: EndpointConfig, *, timeout_s: float = PROBE_TIMEOUT_S) -> ContextLimit:
    """Ask ``ep``'s server for its context length; never raises."""
    where = display_url(ep.api_base)
    key = ep.resolve_key()
    try:
        card = _card(_get_json(f"{ep.api_base}/models", key, timeout_s), ep.model)
    # No server, no network, a timeout, an HTTP error status, a broken or non-JSON body.
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return ContextLimit(None, note=f"could not ask {where}/models ({_reason(exc)})")
    card = card or {}
    meta = card.get("meta") if isinstance(card.get("meta"), dict) else {}
    if tokens := _positive(card.get("max_model_len")):
        return ContextLimit(tokens, "max_model_len from GET /v1/models")
    if tokens := _positive(meta.get("n_ctx")):
        return ContextLimit(tokens, "meta.n_ctx from GET /v1/models")
    if meta:
        try:
            props = _get_json(f"{_server_root(ep.api_base)}/props", key, timeout_s)
        except (OSError, ValueError, http.client.HTTPException):
            props = None
        settings = props.get("default_generation_settings") if isinstance(props, dict) else None
        if isinstance(settings, dict) and (tokens := _positive(settings.get("n_ctx"))):
            return ContextLimit(tokens, "n_ctx from GET /props")
        if tokens := _positive(meta.get("n_ctx_train")):
            return ContextLimit(
                tokens, "n_ctx_train from GET /v1/models: trained length, the server may use less"
            )
    return ContextLimit(None, note=f"{where} does not report its context length")


def _reason(exc: BaseException) -> str:
    """A short, key-free reason for a failed GET."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)[:100]
    return f"{exc.__class__.__name__}: {str(exc)[:100]}"


def context_limits(
    config: DistillConfig, *, probe: bool = False, timeout_s: float = PROBE_TIMEOUT_S
) -> dict[str, ContextLimit]:
    """Each endpoint's context: ``context_tokens`` when set, else asked of its server (``probe``).

    Endpoints on the same server and model are asked once; all are asked at the same time.
    """
    endpoints: Mapping[str, EndpointConfig] = {"generator": config.generator, **config.evaluators}
    out: dict[str, ContextLimit] = {}
    ask: dict[tuple[str, str], list[str]] = {}
    for name, ep in endpoints.items():
        if ep.context_tokens is not None:
            out[name] = ContextLimit(ep.context_tokens, "context_tokens in the config")
        elif probe:
            ask.setdefault((ep.api_base, ep.model), []).append(name)
        else:
            out[name] = ContextLimit(None, note="not asked (set context_tokens to check it)")
    if ask:
        with ThreadPoolExecutor(max_workers=min(8, len(ask))) as pool:
            answers = pool.map(
                lambda names: probe_context(endpoints[names[0]], timeout_s=timeout_s),
                list(ask.values()),
            )
            for names, limit in zip(ask.values(), answers, strict=True):
                out.update(dict.fromkeys(names, limit))
    return {name: out[name] for name in endpoints}
