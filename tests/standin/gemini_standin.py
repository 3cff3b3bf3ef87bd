#!/usr/bin/env python3
r"""A stand-in for the Google Gemini API (generativelanguage.googleapis.com), for tests.

It speaks Gemini's wire format over real TLS: API keys grouped into projects,
per-project x per-model quotas enforced like Google (429 RESOURCE_EXHAUSTED with
QuotaFailure / Help / RetryInfo), Google's key errors, generateContent,
streamGenerateContent (SSE and JSON-array framing), countTokens, embeddings,
files with resumable uploads, cachedContents, the OpenAI-compatible endpoints,
the Live API (BidiGenerateContent over WebSocket),
deterministic token counts with implicit caching, and misbehaviours for fault
tests. Standard library only.

Command line
    gemini_standin.py --cert server.pem --key server.key [--host 127.0.0.1]
        [--port 0] [--config standin.json] [--log log.jsonl] [--verbose]
    Prints exactly one line "READY <port>" on stdout once listening. SIGTERM or
    SIGINT: stop and exit 0 (stalled connections do not hold it up).

Config (JSON; also changeable at run time through POST /__standin/config)
    {"keys":   {"AIza...": {"project": "p1"},            # or just "AIza...": "p1"
                "AIzb...": {"project": "p2", "state": "suspended"}},
     "quotas": {"gemini-2.5-flash": {"rpm": 10, "tpm": 250000, "rpd": 250, "tpd": null},
                "*": {...}},                              # per PROJECT per model
     "projects": {"p1": {"number": "123456789012", "quotas": {...}}},  # optional
     "free_tier": true,                                   # quotaIds with -FreeTier
     "models": null,                                      # a list => unknown model 404
     "default_candidates": 10, "default_chunks": 3,
     "day_retry_delay": 22.0,          # retryDelay advertised by per-day 429s
     "retry_delay_style": "floor",     # floor ("35s", "<1s" as "900ms") | ceil | frac | ms
     "error_style": "current",         # current: Help, QuotaFailure, RetryInfo and the
                                       # "To monitor your current usage" sentence (2026);
                                       # classic: QuotaFailure, Help, RetryInfo (2025)
     "implicit_cache_min_bytes": 1024, "embedding_dims": 16,
     "openai_sse_separator": "\n\n",
     "upload_url_key": false,            # X-Goog-Upload-Url carries key=
     "throttle": null}                   # a 429 storm, below
    Throttle (Google throttling an IP or region: every key answers 429,
    whatever its project has spent; nothing is counted):
        "throttle": {"models": ["gemini-2.5-flash"] | null (every model),
                     "quota": null | "rpm" | "tpm" | "rpd" | "tpd",
                     "retry_delay": 4.0 | null}
    applies to generation (native and OpenAI-compatible), not to countTokens,
    embeddings, files or model lists. quota null: Google's bare 429
    ("Resource has been exhausted (e.g. check quota)."), with a RetryInfo
    only when retry_delay is set; quota "rpm" etc.: the full quota 429 of that
    kind, naming the project's configured limit (or Google's free-tier
    default) as quotaValue. Its log entries have "throttled": true.
    Key states: active (default), invalid (same as unlisted: 400 API_KEY_INVALID),
    suspended (403 CONSUMER_SUSPENDED, full key echoed), blocked (403
    API_KEY_SERVICE_BLOCKED), leaked (403 "Your API key was reported as leaked..."),
    denied (403 "Your project has been denied access...").
    The key is read from x-goog-api-key, ?key=, or Authorization: Bearer (the
    latter only on /openai/ paths; elsewhere it is a 401 like Google's).

Quotas
    RPM and TPM (input tokens = promptTokenCount) over a sliding 60 s window, RPD
    and TPD since the stand-in's day started (POST /__standin/reset_day). Counted
    for generateContent, streamGenerateContent and OpenAI chat completions that
    were answered 200 (not countTokens, embeddings, files, caches).

Tokens
    promptTokenCount = ceil(bytes of all text parts of systemInstruction and
    contents / 4), at least 1 (+ an explicit cachedContent's tokens);
    candidatesTokenCount = 10 unless STANDIN:candidates=N; thoughts 0 unless
    STANDIN:thoughts=N; total = prompt + candidates + thoughts. Implicit cache: a
    prompt sharing a prefix of >= 1024 bytes with an earlier answered prompt of the
    same project and model gets cachedContentTokenCount = ceil(prefix bytes / 4).

Magic words in the prompt text (STANDIN:name=value)
    candidates=N  thoughts=N  chunks=N (stream events, default 3)
    delay_ms=N (between stream events)  sleep_ms=N (before answering); a client
               that closes the connection meanwhile stops the answer at once
               (its log entry: completed false, ended)
    status=CODE (answer that error: 500 INTERNAL, 503 UNAVAILABLE, 429 bare, ...)
    echo_key=1 (with status=CODE: the error echoes the full key used, in its
               message and in ErrorInfo metadata, as Google does in some)
    echo_key=glued|escaped|long (with status=CODE: the key glued to other key
               characters; JSON-\\u- and %-escaped; or in a body over 64 KiB,
               across byte 65536)
    echo_key=header (the answer, error or not, carries the key in headers)
    close=1 (the answer ends the connection: Connection: close)
    quota=rpm|tpm|rpd|tpd (answer a full quota 429 of that kind, nothing counted;
               countTokens too, for rpm and rpd)
    retry_ms=N (the retryDelay that this request's quota 429, forced or real,
               advertises, instead of the computed one)
    legacy_usage=1 (intermediate stream chunks without candidatesTokenCount)
    fault=reset_midstream|stall|garbage|close_before_headers|stall_midstream|
          error_midstream|close_midstream|cut_chunk|bad_chunk
          (the *_midstream, cut_chunk and bad_chunk faults break the answer
          off after its head and first event, or half of a whole answer:
          a TCP reset, silence, a clean close without the body's end, a
          chunk whose size line says more than comes before a clean close,
          a chunk size line that is no hex number; a non-stream answer is
          cut short of its Content-Length, or chunked with framing=chunked)
    framing=chunked (a non-stream answer comes chunked, not with a length)

Live API (WebSocket, over the same TLS listener)
    GET /ws/google.ai.generativelanguage.{v1,v1beta,v1alpha}.GenerativeService.
        BidiGenerateContent (or ...BidiGenerateContentConstrained; "//ws/..." too,
        as @google/genai sends it) with Upgrade: websocket, Connection: Upgrade,
        Sec-WebSocket-Version: 13 (else 426 with Sec-WebSocket-Version: 13) and a
        Sec-WebSocket-Key of 16 bytes in base64 (else 400); no upgrade: 400.
        Answer 101 with Sec-WebSocket-Accept (RFC 6455).  Frames: ours unmasked,
        the client's must be masked (else close 1002); fragmented messages with
        control frames between fragments; ping answered by pong (same payload);
        reserved bits, unknown opcodes, control frames over 125 bytes or
        fragmented: 1002; invalid UTF-8 in a text message: 1007; a message over
        max_message: 1009; a close is answered with the same code (a reserved
        code such as 1005 in it: 1002).  Our close waits close_wait_s for the
        client's.  Close reasons are cut to 123 bytes, as Google's are.
    Credential: x-goog-api-key, ?key= or ?access_token= (looked up like a key).
        The handshake succeeds whatever the key; at setup a refused key closes
        the socket as Google does: 1007 "API key not valid. Please pass a valid
        API key." (invalid or unknown), 1008 with the REST message otherwise
        (suspended, blocked, leaked, denied; no credential: "Method doesn't
        allow unregistered callers ...").
    Messages (JSON in text or binary frames; ours are binary frames, as
        Google's are, unless "frames": "text"):
        setup {model, generationConfig, systemInstruction, tools,
            sessionResumption} -> {"setupComplete": {}}.  The first message must
            be setup (else 1007); no JSON: 1007.  The session is one request
            against the project's quotas (rpm/rpd, 0 tokens): over a limit, close
            1011 "RESOURCE_EXHAUSTED: You exceeded your current quota...".
            sessionResumption {} asks for handles; {handle} resumes (unknown
            handle: 1008).
        clientContent {turns, turnComplete}, realtimeInput {text} (answered at
            once), realtimeInput {audio | video | mediaChunks} (audio counted)
            then {audioStreamEnd} or {activityEnd} -> serverContent {modelTurn:
            {parts}} x chunks (default 2; inlineData audio/pcm;rate=24000 when
            responseModalities has AUDIO), {generationComplete: true}, then
            {serverContent: {turnComplete: true}, usageMetadata: {
            promptTokenCount, responseTokenCount, totalTokenCount,
            promptTokensDetails [{modality TEXT|AUDIO, tokenCount}],
            responseTokensDetails}}, then sessionResumptionUpdate {newHandle,
            resumable: true} when setup asked.  promptTokenCount counts the whole
            session so far (text bytes / 4, plus audio bytes / 1000); prompt
            tokens are added to the project's day (tpd).
        A function declared in setup.tools and named in the turn ("call NAME" or
            STANDIN:tool=NAME) -> toolCall {functionCalls: [{id, name, args}]}
            with usageMetadata; toolResponse {functionResponses: [{id, ...}]}
            -> the answer (its first part says "Function NAME answered.").  A
            toolResponse for no pending call: 1007.
        Magic words in a turn: candidates=N, chunks=N, goaway=1 (goAway
            {timeLeft} before the answer), close=CODE (the server closes with
            CODE), quota=rpm|tpm|rpd|tpd (close 1011 RESOURCE_EXHAUSTED).
            STANDIN:quota=... in setup.systemInstruction refuses the setup.
    Config "live" (replaced whole by POST /__standin/config):
        {"refuse_handshakes": N,        # the next N handshakes get an HTTP
         "refuse_handshake_status": 429,#   answer (429: the quota shape)
         "refuse_setups": N,            # the next N setups are closed with
         "refuse_code": 1011,           #   this code and reason
         "refuse_reason": "Internal error encountered.",
         "goaway_after": N,             # goAway after the client's Nth message
         "goaway_time_left": "10s", "frames": "binary" | "text",
         "max_message": 16777216, "close_wait_s": 2.0}
    Log: one entry per session, written when it ends (before the TCP close):
        kind "live", status 101, key, key_source (header|query|access_token),
        project, model, path (as sent, "//" kept), version, constrained,
        received / sent (message kinds in order), turns, prompt / candidates /
        total (summed over the session's usageMetadata) and usage, close_code,
        close_reason, closed_by (client|server|eof), client_close [code,
        reason], handles, resumed, audio_bytes, pings (+ quota, refused,
        error_status, protocol_error when they apply).  A refused handshake
        logs like any HTTP error.

Admin (no auth)
    GET  /__standin/healthz            {"ok": true}
    GET  /__standin/log[?since=SEQ]    served requests in order: seq, time, key,
         key_source (header|query|bearer), project, model, path, method, status
         (null when no HTTP answer was given), stream, prompt, candidates, cached,
         thoughts, total (+ kind, fault, error_status, quota, retry_delay,
         request_tokens, file, cache when they apply); credentials: every
         credential the request carried, by source ({"header": k} ...);
         host: the Host header it came with;
         streams also events_sent, completed (null while streaming, false
         when the client went away or a fault cut it) and ended
    GET  /__standin/config             the config in force
    POST /__standin/config             merge ("keys", "quotas", "projects" merge per
         entry, null deletes one); ?replace=1 or PUT replaces the whole config
    POST /__standin/reset_day          new day: RPD/TPD counters cleared
    POST /__standin/reset_minute       the 60 s windows cleared
    POST /__standin/reset              windows, day, log (seq restarts at 1),
         implicit cache, files, uploads, cachedContents, batches, operations
         and fileSearchStores cleared

Batches, long-running operations, file search stores
    models/{m}:batchGenerateContent and :asyncBatchEmbedContent create
    batches/{id} (an Operation whose metadata is the batch); GET batches/{id}
    moves it PENDING -> RUNNING -> SUCCEEDED (after "job_polls" GETs while
    running, default 1; then done: true, with inlinedResponses or a
    responsesFile, files/batch-...); batches/{id}:cancel, DELETE, GET batches.
    Not counted against any quota. models/{m}:predictLongRunning creates
    models/{m}/operations/{id}, done at the GET after job_polls, naming a video
    file. fileSearchStores (create, list, get, delete), :importFile and
    /upload/.../fileSearchStores/{id}:uploadToFileSearchStore make documents
    (fileSearchStores/{id}/documents/{d}) and finished operations; a
    generateContent fileSearch tool must name the project's stores. Each
    belongs to the creating project: another project's key gets 403
    PERMISSION_DENIED "The caller does not have permission".
    GET  /__standin/usage              per project x model: rpm/tpm/rpd/tpd used
    GET  /__standin/probes             key probes (GET models?pageSize=1, any
         answer): {"by_key": {key: n}, "by_second": {"<epoch s>": n},
         "max_per_second": n, "total": n}; log entries of models lists carry
         page_size
"""

import argparse
import base64
import copy
import hashlib
import json
import math
import os
import random
import re
import select
import signal
import socket
import ssl
import string
import struct
import sys
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STOP = threading.Event()
SERVICE = "generativelanguage.googleapis.com"
SERVER_HEADER = "scaffolding on HTTPServer2"
RATE_LIMIT_DOCS = "https://ai.google.dev/gemini-api/docs/rate-limits"
GRANULARITY = 8 * 1024 * 1024
# Faults that break an answer off once its head and part of its body are
# out (cut_answer, break_off).
MIDSTREAM_FAULTS = ("reset_midstream", "stall_midstream", "close_midstream",
                    "cut_chunk", "bad_chunk")

DEFAULT_MODELS = [
    "gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite",
    "gemini-2.0-flash", "gemini-embedding-001",
]

DEFAULT_CONFIG = {
    "keys": {},
    "quotas": {},
    "free_tier": True,
    "models": None,              # list => unknown models get 404; null => any model
    "default_candidates": 10,
    "default_chunks": 3,
    "day_retry_delay": 22.0,     # seconds advertised by a per-day 429
    "retry_delay_style": "floor",  # floor | ceil | frac | ms
    "error_style": "current",    # current (2026 captures) | classic
    "implicit_cache_min_bytes": 1024,
    "embedding_dims": 16,
    "openai_sse_separator": "\n\n",
    "throttle": None,
}

STATUS_MESSAGES = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    501: ("NOT_IMPLEMENTED", "Method not implemented."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}

# ---------------------------------------------------------------------------
# JSON as Google writes it: pretty bodies with two-space indent, SSE events on
# one line with ": " after keys and "," between members, and <, >, &, =, '
# escaped as \u003c ... inside strings (those characters never appear outside
# strings in JSON, so a textual replacement is exact).

_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                          "=": "\\u003d"})


def pretty(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False).translate(_ESCAPES)


def oneline(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ": ")).translate(_ESCAPES)


def compact(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def error_obj(code, status, message, details=None):
    err = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


def status_error(code, message=None):
    status, default = STATUS_MESSAGES.get(code, ("UNKNOWN", "Unknown error."))
    return error_obj(code, status, message or default)


def echo_body(code, status, key, how):
    """An error body, written by hand, that holds key the hostile ways:
    glued to other key characters, JSON- and percent-escaped, or straddling
    byte 65536 of a body longer than that."""
    head = '{"error": {"code": %d, "message": "' % code
    tail = '", "status": "%s"}}\n' % status
    if how == "glued":
        msg = "keys %s_x %s-y %s0 x%s %sZ" % (key, key, key, key, key)
    elif how == "escaped":
        msg = "escaped \\u%04x%s and \\u%04X%s and %%%02X%s" % (
            ord(key[0]), key[1:], ord(key[0]), key[1:20] + "\\u%04x" % ord(key[20]) + key[21:],
            ord(key[0]), key[1:])
    else:
        pad = 65536 - len(head) - 20
        msg = "p" * pad + key + " " + "q" * 4096
    return head + msg + tail


def rand_id(n=22, alphabet=string.ascii_letters + string.digits + "-_"):
    return "".join(random.choice(alphabet) for _ in range(n))


def rfc3339(t):
    frac = int((t % 1) * 1e6)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % frac


def fmt_seconds(d):
    s = ("%.9f" % d).rstrip("0").rstrip(".")
    return s or "0"


def project_number(name):
    return str(int(hashlib.sha256(name.encode()).hexdigest(), 16) % 900000000000 + 100000000000)


class Reply(Exception):
    """An answer decided deep inside a handler: (status, body object)."""

    def __init__(self, code, body, headers=None):
        super().__init__(code)
        self.code = code
        self.body = body
        self.headers = headers or {}


# ---------------------------------------------------------------------------
# State shared by all connections; every read-modify-write is under .lock.

class State:
    def __init__(self, config, logpath=None):
        self.lock = threading.Lock()
        self.config = copy.deepcopy(DEFAULT_CONFIG)
        self.merge_config(config or {})
        self.logpath = logpath
        self.logfile = open(logpath, "a", buffering=1) if logpath else None
        self.reset_all()

    def reset_all(self):
        self.windows = {}      # (project, model) -> deque[(t, prompt tokens)]
        self.days = {}         # (project, model) -> [requests, tokens]
        self.day_started = time.time()
        self.log = []
        self.seq = 0
        self.history = {}      # (project, model) -> list[bytes] (implicit cache)
        self.files = {}        # id -> resource + "_project"
        self.uploads = {}      # upload id -> session
        self.caches = {}       # id -> resource + "_project", "_tokens"
        self.batches = {}      # id -> batch (metadata) + "_project", "_polls"
        self.operations = {}   # name -> operation + "_project", "_polls"
        self.stores = {}       # id -> store + "_project", "_docs"
        self.live_handles = {}  # Live session resumption handle -> project

    def merge_config(self, new, replace=False):
        if replace:
            self.config = copy.deepcopy(DEFAULT_CONFIG)
        for k, v in new.items():
            if k in ("keys", "quotas", "projects") and isinstance(v, dict) \
                    and isinstance(self.config.get(k), dict):
                for kk, vv in v.items():
                    if vv is None:
                        self.config[k].pop(kk, None)
                    else:
                        self.config[k][kk] = vv
            else:
                self.config[k] = v
        if self.config.get("keys") is None:
            self.config["keys"] = {}
        if self.config.get("quotas") is None:
            self.config["quotas"] = {}

    # -- keys ---------------------------------------------------------------
    def key_info(self, key):
        info = self.config["keys"].get(key)
        if info is None:
            return None
        if isinstance(info, str):
            info = {"project": info}
        info = dict(info)
        info.setdefault("project", "project-" + hashlib.sha256(key.encode()).hexdigest()[:8])
        info.setdefault("state", "active")
        proj = self.config.get("projects", {}).get(info["project"], {})
        info.setdefault("number", str(proj.get("number") or project_number(info["project"])))
        return info

    # -- quotas -------------------------------------------------------------
    def limits(self, project, model):
        proj = (self.config.get("projects") or {}).get(project) or {}
        for table in (proj.get("quotas") or {}, self.config.get("quotas") or {}):
            if model in table:
                return table[model] or {}
            if "*" in table:
                return table["*"] or {}
        return {}

    def metric_names(self, kind):
        free = self.config.get("free_tier", True)
        p = SERVICE + "/"
        if free:
            return {
                "rpm": (p + "generate_content_free_tier_requests",
                        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
                "tpm": (p + "generate_content_free_tier_input_token_count",
                        "GenerateContentInputTokensPerModelPerMinute-FreeTier"),
                "rpd": (p + "generate_content_free_tier_requests",
                        "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
                "tpd": (p + "generate_content_free_tier_input_token_count",
                        "GenerateContentInputTokensPerModelPerDay-FreeTier"),
            }[kind]
        return {
            "rpm": (p + "generate_requests_per_model",
                    "GenerateRequestsPerMinutePerProjectPerModel"),
            "tpm": (p + "generate_content_paid_tier_input_token_count",
                    "GenerateContentPaidTierInputTokensPerModelPerMinute"),
            "rpd": (p + "generate_requests_per_model_per_day",
                    "GenerateRequestsPerDayPerProjectPerModel"),
            "tpd": (p + "generate_content_paid_tier_input_token_count",
                    "GenerateContentPaidTierInputTokensPerModelPerDay"),
        }[kind]

    def _window(self, project, model, now):
        win = self.windows.setdefault((project, model), deque())
        while win and win[0][0] <= now - 60.0:
            win.popleft()
        return win

    def quota_violations(self, project, model, tokens, now):
        """[(kind, limit, delay seconds)] for each limit this request would exceed."""
        lim = self.limits(project, model)
        win = self._window(project, model, now)
        day = self.days.setdefault((project, model), [0, 0])
        out = []
        rpm = lim.get("rpm")
        if rpm is not None and len(win) + 1 > rpm:
            if rpm <= 0 or not win:
                d = 60.0
            else:
                d = win[len(win) - rpm][0] + 60.0 - now
            out.append(("rpm", rpm, d))
        tpm = lim.get("tpm")
        if tpm is not None:
            used = sum(t for _, t in win)
            if used + tokens > tpm:
                d = None
                for t0, n in win:
                    used -= n
                    if used + tokens <= tpm:
                        d = t0 + 60.0 - now
                        break
                if d is None:
                    d = (win[-1][0] + 60.0 - now) if win else 60.0
                out.append(("tpm", tpm, d))
        dd = float(self.config.get("day_retry_delay", 22.0))
        rpd = lim.get("rpd")
        if rpd is not None and day[0] + 1 > rpd:
            out.append(("rpd", rpd, dd))
        tpd = lim.get("tpd")
        if tpd is not None and day[1] + tokens > tpd:
            out.append(("tpd", tpd, dd))
        return [(k, l, max(d, 0.001)) for k, l, d in out]

    def account(self, project, model, tokens, now):
        self._window(project, model, now).append((now, tokens))
        day = self.days.setdefault((project, model), [0, 0])
        day[0] += 1
        day[1] += tokens

    def implicit_cached(self, project, model, text):
        """Bytes shared with an earlier prompt of this project and model."""
        hist = self.history.setdefault((project, model), [])
        best = 0
        for old in hist:
            n = len(os.path.commonprefix([old, text]))
            if n > best:
                best = n
        if text:
            hist.append(text)
            del hist[:-32]
        if best < int(self.config.get("implicit_cache_min_bytes", 1024)):
            return 0
        return best

    # -- log ----------------------------------------------------------------
    def add_log(self, entry):
        """Caller holds the lock."""
        self.seq += 1
        rec = {"seq": self.seq, "time": time.time()}
        for k in ("key", "key_source", "project", "model", "path", "method",
                  "status", "stream", "prompt", "candidates", "cached",
                  "thoughts", "total"):
            rec[k] = entry.pop(k, None)
        rec.update(entry)
        self.log.append(rec)
        if self.logfile:
            try:
                self.logfile.write(json.dumps(rec) + "\n")
            except (OSError, ValueError):
                pass
        return rec

    def probe_counts(self):
        """Caller holds the lock.  Key probes (GET .../models?pageSize=1)
        seen: per key, per second (whole seconds since the epoch), and the
        largest count in any one second."""
        by_key, by_sec = {}, {}
        for e in self.log:
            if e.get("page_size") != 1 or e.get("method") != "GET":
                continue
            k = e.get("key") or ""
            by_key[k] = by_key.get(k, 0) + 1
            s = str(int(e["time"]))
            by_sec[s] = by_sec.get(s, 0) + 1
        return {"by_key": by_key, "by_second": by_sec,
                "max_per_second": max(by_sec.values()) if by_sec else 0,
                "total": sum(by_key.values())}

    def usage_snapshot(self):
        now = time.time()
        out = []
        keys = set(self.windows) | set(self.days)
        for project, model in sorted(keys):
            win = self._window(project, model, now)
            day = self.days.get((project, model), [0, 0])
            out.append({"project": project, "model": model,
                        "rpm_used": len(win), "tpm_used": sum(t for _, t in win),
                        "rpd_used": day[0], "tpd_used": day[1],
                        "limits": self.limits(project, model)})
        return {"day_started": self.day_started, "usage": out}


# ---------------------------------------------------------------------------
# Request content helpers.

MAGIC_RE = re.compile(r"STANDIN:([A-Za-z_]+)=([A-Za-z0-9_.\-]+)")


def parse_magic(text):
    out = {}
    for m in MAGIC_RE.finditer(text):
        out[m.group(1).lower()] = m.group(2)
    return out


def magic_int(magic, name, default, lo=0, hi=10 ** 9):
    try:
        v = int(float(magic[name]))
    except (KeyError, ValueError):
        return default
    return max(lo, min(hi, v))


def _parts_text(content, out):
    if isinstance(content, str):
        out.append(content)
        return
    if isinstance(content, list):
        for c in content:
            _parts_text(c, out)
        return
    if not isinstance(content, dict):
        return
    parts = content.get("parts")
    if parts is None and "text" in content:
        parts = [content]
    for p in parts or []:
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, dict) and isinstance(p.get("text"), str):
            out.append(p["text"])


def gemini_text(body):
    out = []
    si = body.get("systemInstruction", body.get("system_instruction"))
    if si:
        _parts_text(si, out)
    _parts_text(body.get("contents") or [], out)
    return "".join(out)


def gemini_file_ids(body):
    ids = []

    def walk(x):
        if isinstance(x, dict):
            fd = x.get("fileData") or x.get("file_data")
            if isinstance(fd, dict):
                uri = fd.get("fileUri") or fd.get("file_uri") or ""
                m = re.search(r"files/([A-Za-z0-9_-]+)", uri)
                if m:
                    ids.append(m.group(1))
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(body.get("contents"))
    return ids


def openai_text(body):
    out = []
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        c = m.get("content")
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            for p in c:
                if isinstance(p, dict) and isinstance(p.get("text"), str):
                    out.append(p["text"])
    return "".join(out)


def tokens_of(nbytes):
    return max(1, math.ceil(nbytes / 4))


def answer_texts(n, words):
    """n pieces of deterministic answer text."""
    return ["Stand-in answer part %d of %d (%d tokens)." % (i + 1, n, words) for i in range(n)]


def embedding_values(text, dims):
    h = hashlib.sha256(text.encode()).digest()
    vals = []
    while len(vals) < dims:
        h = hashlib.sha256(h).digest()
        for i in range(0, 32, 4):
            if len(vals) < dims:
                vals.append(round(struct.unpack(">i", h[i:i + 4])[0] / 2 ** 31, 6))
    return vals


# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# The Live API: RFC 6455 WebSocket framing and BidiGenerateContent sessions.

LIVE_PATH_RE = re.compile(
    r"^/+ws/google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
LIVE_DEFAULTS = {
    "refuse_setups": 0, "refuse_code": 1011,
    "refuse_handshakes": 0, "refuse_handshake_status": 429,
    "refuse_reason": "Internal error encountered.",
    "goaway_after": None, "goaway_time_left": "10s",
    "frames": "binary", "max_message": 16 * 1024 * 1024,
    "close_wait_s": 2.0,
}
WS_VALID_CLOSE = set(range(1000, 1004)) | set(range(1007, 1012)) | set(range(3000, 5000))


class WSClosed(Exception):
    """The connection is gone (EOF, reset) or a close handshake finished."""


class WSError(Exception):
    """The peer broke the protocol: close with code, reason."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code, self.reason = code, reason


def ws_reason(text):
    """A close reason cut to the 123 bytes a close frame holds (Google cuts
    its long reasons the same way), on a UTF-8 boundary."""
    b = text.encode()[:123]
    return b.decode("utf-8", "ignore")


class WebSocket:
    """The server side of one WebSocket over a handler's rfile/wfile:
    unmasked frames out, masked frames in, fragmentation, ping/pong and the
    close handshake.  One thread uses it."""

    def __init__(self, rfile, wfile, max_message):
        self.rfile, self.wfile = rfile, wfile
        self.max_message = max_message
        self.close_sent = None        # (code, reason) once we sent a close
        self.close_received = None    # (code, reason) once the peer did
        self.pings = 0

    def _read(self, n):
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise WSClosed("eof")
        return data

    def send_frame(self, opcode, payload, fin=True):
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        self.wfile.write(head + payload)
        self.wfile.flush()

    def send_json(self, obj, binary=True):
        self.send_frame(0x2 if binary else 0x1, json.dumps(obj).encode())

    def send_close(self, code, reason=""):
        if self.close_sent is None:
            self.close_sent = (code, reason)
            payload = b"" if code is None else struct.pack("!H", code) + ws_reason(reason).encode()
            try:
                self.send_frame(0x8, payload)
            except OSError:
                pass

    def read_frame(self):
        b0, b1 = self._read(2)
        fin, rsv, opcode = b0 & 0x80, b0 & 0x70, b0 & 0x0F
        masked, n = b1 & 0x80, b1 & 0x7F
        if rsv:
            raise WSError(1002, "reserved bits set without an extension")
        if opcode not in (0x0, 0x1, 0x2, 0x8, 0x9, 0xA):
            raise WSError(1002, "unknown opcode %d" % opcode)
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
            if n >> 63:
                raise WSError(1002, "payload length with the top bit set")
        if opcode >= 0x8 and (n > 125 or not fin):
            raise WSError(1002, "control frame fragmented or over 125 bytes")
        if not masked:
            raise WSError(1002, "client frame not masked")
        if n > self.max_message:
            raise WSError(1009, "frame too big")
        mask = self._read(4)
        data = bytearray(self._read(n))
        for i in range(n):
            data[i] ^= mask[i & 3]
        return bool(fin), opcode, bytes(data)

    def recv_message(self):
        """(opcode, payload) of the next whole data message; answers pings,
        handles a close (raises WSClosed after answering one)."""
        parts, op = [], None
        size = 0
        while True:
            fin, opcode, data = self.read_frame()
            if opcode == 0x9:
                self.pings += 1
                self.send_frame(0xA, data)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                self._peer_close(data)
                raise WSClosed("close")
            if opcode == 0x0:
                if op is None:
                    raise WSError(1002, "continuation without a message")
            else:
                if op is not None:
                    raise WSError(1002, "new message inside a fragmented one")
                op = opcode
            size += len(data)
            if size > self.max_message:
                raise WSError(1009, "message too big")
            parts.append(data)
            if fin:
                payload = b"".join(parts)
                if op == 0x1:
                    try:
                        payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise WSError(1007, "invalid UTF-8 in a text message")
                return op, payload

    def _peer_close(self, data):
        if len(data) == 1:
            raise WSError(1002, "close frame of one byte")
        if len(data) >= 2:
            code = struct.unpack("!H", data[:2])[0]
            try:
                reason = data[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise WSError(1007, "invalid UTF-8 in the close reason")
            if code not in WS_VALID_CLOSE:
                raise WSError(1002, "invalid close code %d" % code)
            self.close_received = (code, reason)
        else:
            self.close_received = (None, "")
        # Echo the peer's code, as RFC 6455 5.5.1 suggests.
        self.send_close(self.close_received[0], "")

    def wait_close(self, sock, seconds):
        """After our close: read until the peer's close (or EOF, or time)."""
        end = time.time() + seconds
        try:
            while self.close_received is None and time.time() < end:
                sock.settimeout(max(0.05, end - time.time()))
                fin, opcode, data = self.read_frame()
                if opcode == 0x8:
                    self.close_received = (struct.unpack("!H", data[:2])[0]
                                           if len(data) >= 2 else None,
                                           data[2:].decode("utf-8", "replace"))
        except (WSClosed, WSError, OSError, ValueError):
            pass


def live_text_of(content):
    out = []
    _parts_text(content or {}, out)
    return "".join(out)


class LiveSession:
    """One BidiGenerateContent session: the messages after the handshake.
    Google's answers: setupComplete, serverContent (modelTurn parts,
    generationComplete, turnComplete) with usageMetadata, toolCall,
    sessionResumptionUpdate, goAway; refusals are closes."""

    def __init__(self, handler, st, ws, info, cfg):
        self.h, self.st, self.ws, self.info, self.cfg = handler, st, ws, info, cfg
        self.binary = cfg.get("frames", "binary") != "text"
        self.model = None
        self.setup = None
        self.context_bytes = 0      # bytes of text in the session so far
        self.audio_bytes = 0        # audio received since the last answer
        self.audio_total = 0
        self.pending_text = ""
        self.pending_tool = None    # the toolCall awaiting its toolResponse
        self.received = []          # the client's message kinds, in order
        self.sent = []              # ours
        self.usage = {"promptTokenCount": 0, "responseTokenCount": 0, "totalTokenCount": 0}
        self.turns = 0
        self.handles = []
        self.resumed = None
        self.closed_by = None
        self.close = None

    def send(self, obj):
        self.sent.append(next(iter(obj)) if obj else "")
        self.ws.send_json(obj, self.binary)

    def server_close(self, code, reason):
        self.closed_by = "server"
        self.close = (code, reason)
        self.ws.send_close(code, reason)
        raise WSClosed("server close")

    def quota_close(self, viols):
        kinds = [v[0] for v in viols]
        self.h.entry["quota"] = kinds
        self.server_close(1011, "RESOURCE_EXHAUSTED: You exceeded your current quota, please check "
                          "your plan and billing details. For more information on this error, "
                          "head to: " + RATE_LIMIT_DOCS)

    def run(self):
        goaway_after = self.cfg.get("goaway_after")
        while True:
            op, payload = self.ws.recv_message()
            try:
                msg = json.loads(payload)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError):
                self.received.append("invalid")
                self.server_close(1007, "Invalid JSON payload received. Unexpected token.")
            kind = next((k for k in ("setup", "clientContent", "realtimeInput", "toolResponse")
                         if k in msg), None)
            self.received.append(kind or "unknown")
            if kind is None:
                self.server_close(1007, "Invalid JSON payload received. Unknown name %s: "
                                  "Cannot find field." % json.dumps(next(iter(msg), "")))
            if self.setup is None and kind != "setup":
                self.server_close(1007, "Request contains an invalid argument. "
                                  "The first message must be setup.")
            getattr(self, "on_" + kind)(msg[kind] or {}, op)
            if goaway_after is not None and len(self.received) == int(goaway_after):
                self.send({"goAway": {"timeLeft": self.cfg.get("goaway_time_left", "10s")}})

    # -- messages -------------------------------------------------------
    def on_setup(self, setup, op):
        if self.setup is not None:
            self.server_close(1007, "Request contains an invalid argument. setup sent twice.")
        self.setup = setup
        model = str(setup.get("model") or "")
        self.model = model[len("models/"):] if model.startswith("models/") else model
        self.h.entry["model"] = self.model
        st, info = self.st, self.info
        if self.h.live_auth_error:
            self.server_close(*self.h.live_auth_error)
        if not self.model:
            self.server_close(1007, "Request contains an invalid argument. setup.model is required.")
        models = st.config.get("models")
        if models is not None and self.model not in models:
            self.server_close(1008, "models/%s is not found for API version %s, or is not "
                              "supported for bidiGenerateContent." % (self.model, self.h.live_version))
        with st.lock:
            live = st.config.get("live") or {}
            if int(live.get("refuse_setups") or 0) > 0:
                live["refuse_setups"] = int(live["refuse_setups"]) - 1
                refuse = (int(live.get("refuse_code", 1011)),
                          live.get("refuse_reason", LIVE_DEFAULTS["refuse_reason"]))
            else:
                refuse = None
        if refuse:
            self.h.entry["refused"] = True
            self.server_close(*refuse)
        magic = parse_magic(live_text_of(setup.get("systemInstruction")))
        if magic.get("quota") in ("rpm", "tpm", "rpd", "tpd"):
            self.quota_close([(magic["quota"], 0, 60.0)])
        now = time.time()
        with st.lock:
            viols = st.quota_violations(info["project"], self.model, 0, now)
            if not viols:
                st.account(info["project"], self.model, 0, now)
        if viols:
            self.quota_close(viols)
        self.context_bytes += len(live_text_of(setup.get("systemInstruction")).encode())
        res = setup.get("sessionResumption")
        if isinstance(res, dict) and res.get("handle"):
            with st.lock:
                known = res["handle"] in st.live_handles
            self.resumed = bool(known)
            if not known:
                self.server_close(1008, "Session resumption handle is invalid or expired.")
        self.send({"setupComplete": {}})

    def on_clientContent(self, cc, op):
        for turn in cc.get("turns") or []:
            t = live_text_of(turn)
            self.pending_text += t
            self.context_bytes += len(t.encode())
        if cc.get("turnComplete"):
            self.answer()

    def on_realtimeInput(self, ri, op):
        chunks = list(ri.get("mediaChunks") or [])
        for k in ("audio", "video"):
            if isinstance(ri.get(k), dict):
                chunks.append(ri[k])
        for c in chunks:
            try:
                n = len(base64.b64decode(c.get("data") or "", validate=False))
            except (ValueError, TypeError):
                n = 0
            if str(c.get("mimeType", "")).startswith("audio/"):
                self.audio_bytes += n
                self.audio_total += n
        if isinstance(ri.get("text"), str):
            self.pending_text += ri["text"]
            self.context_bytes += len(ri["text"].encode())
            self.answer()
        elif ri.get("audioStreamEnd") or "activityEnd" in ri:
            self.answer()

    def on_toolResponse(self, tr, op):
        frs = tr.get("functionResponses") or []
        if isinstance(frs, dict):
            frs = [frs]
        ids = [f.get("id") for f in frs if isinstance(f, dict)]
        if not self.pending_tool or self.pending_tool["id"] not in ids:
            self.server_close(1007, "Request contains an invalid argument. "
                              "toolResponse for no pending function call.")
        self.pending_tool = None
        self.context_bytes += len(json.dumps(frs).encode())
        names = ",".join(str(f.get("name")) for f in frs if isinstance(f, dict))
        self.answer(after_tool=names)

    # -- answers --------------------------------------------------------
    def declared_functions(self):
        out = []
        for tool in self.setup.get("tools") or []:
            for fd in (tool or {}).get("functionDeclarations") or []:
                if isinstance(fd, dict) and fd.get("name"):
                    out.append(fd["name"])
        return out

    def answer(self, after_tool=None):
        text, self.pending_text = self.pending_text, ""
        audio, self.audio_bytes = self.audio_bytes, 0
        magic = parse_magic(text)
        st, info = self.st, self.info
        if magic.get("quota") in ("rpm", "tpm", "rpd", "tpd"):
            self.quota_close([(magic["quota"], 0, 60.0)])
        if "close" in magic:
            code = magic_int(magic, "close", 1011, 1000, 4999)
            self.server_close(code, "Closed by STANDIN:close=%d." % code)
        if magic.get("goaway"):
            self.send({"goAway": {"timeLeft": self.cfg.get("goaway_time_left", "10s")}})
        self.turns += 1
        prompt_text = tokens_of(self.context_bytes) if self.context_bytes else 0
        prompt_audio = math.ceil(self.audio_total / 1000) if self.audio_total else 0
        prompt = max(1, prompt_text + prompt_audio)
        # A function declared in setup and named in the text ("call NAME" or
        # STANDIN:tool=NAME) is called first; the answer follows its response.
        if after_tool is None:
            want = magic.get("tool")
            for name in self.declared_functions():
                if want == name or re.search(r"\bcall\s+" + re.escape(name) + r"\b", text):
                    fc = {"id": "function-call-" + rand_id(12, string.digits), "name": name,
                          "args": {"text": text[:200]}}
                    self.pending_tool = fc
                    tool_usage = {"promptTokenCount": prompt, "totalTokenCount": prompt,
                                  "promptTokensDetails": self.prompt_details(prompt_text, prompt_audio)}
                    self.add_usage(tool_usage)
                    self.send({"toolCall": {"functionCalls": [fc]}, "usageMetadata": tool_usage})
                    return
        cand = magic_int(magic, "candidates", int(st.config.get("default_candidates", 10)), 0, 10 ** 6)
        chunks = magic_int(magic, "chunks", 2, 1, 1000)
        audio_out = "AUDIO" in [str(m).upper() for m in
                                ((self.setup.get("generationConfig") or {}).get("responseModalities")
                                 or [])]
        pieces = answer_texts(chunks, cand)
        if after_tool:
            pieces[0] = "Function %s answered. " % after_tool + pieces[0]
        for i, piece in enumerate(pieces):
            if audio_out:
                pcm = (piece.encode() * 40)[:4800]   # 0.1 s of 24 kHz PCM16
                part = {"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                       "data": base64.b64encode(pcm).decode()}}
            else:
                part = {"text": piece}
            self.send({"serverContent": {"modelTurn": {"parts": [part]}}})
        self.send({"serverContent": {"generationComplete": True}})
        usage = {"promptTokenCount": prompt, "responseTokenCount": cand,
                 "totalTokenCount": prompt + cand,
                 "promptTokensDetails": self.prompt_details(prompt_text, prompt_audio),
                 "responseTokensDetails": [{"modality": "AUDIO" if audio_out else "TEXT",
                                            "tokenCount": cand}]}
        self.add_usage(usage)
        with st.lock:
            day = st.days.setdefault((info["project"], self.model), [0, 0])
            day[1] += prompt
        self.send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        self.context_bytes += sum(len(p) for p in pieces)
        if isinstance(self.setup.get("sessionResumption"), dict):
            handle = "standin-handle-" + rand_id(24)
            with st.lock:
                st.live_handles[handle] = self.info["project"]
            self.handles.append(handle)
            self.send({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}})

    @staticmethod
    def prompt_details(text_tokens, audio_tokens):
        out = []
        if text_tokens or not audio_tokens:
            out.append({"modality": "TEXT", "tokenCount": max(1, text_tokens) if not audio_tokens
                        else text_tokens})
        if audio_tokens:
            out.append({"modality": "AUDIO", "tokenCount": audio_tokens})
        return out

    def add_usage(self, u):
        for k in ("promptTokenCount", "responseTokenCount", "totalTokenCount"):
            self.usage[k] += u.get(k, 0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = SERVER_HEADER
    sys_version = ""
    timeout = 300
    error_content_type = "application/json; charset=UTF-8"

    # -- plumbing -----------------------------------------------------------
    def version_string(self):
        return SERVER_HEADER

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("standin: %s - %s\n" % (self.address_string(), fmt % args))

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def send_error(self, code, message=None, explain=None):
        # Malformed requests (BaseHTTPRequestHandler's own errors) in Google's shape.
        try:
            body = (pretty(status_error(code, message)) + "\n").encode()
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except OSError:
            pass
        self.close_connection = True

    def std_headers(self, ctype):
        self.send_header("Content-Type", ctype)
        for k, v in getattr(self, "echo_headers", {}).items():
            self.send_header(k, v)
        if getattr(self, "close_after", False):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Vary", "Origin, X-Origin, Referer")
        self.send_header("X-XSS-Protection", "0")
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Server-Timing", "gfet4t7; dur=%d" % random.randint(40, 900))

    def send_body(self, code, body, ctype="application/json; charset=UTF-8", headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.std_headers(ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_obj(self, code, obj, headers=None, wrap=False):
        if wrap:
            text = "[" + pretty(obj) + "\n]"
        else:
            text = pretty(obj) + "\n"
        self.send_body(code, text, headers=headers)

    def send_plain_json(self, code, obj):
        self.send_body(code, json.dumps(obj, indent=1) + "\n")

    def start_chunked(self, code, ctype, headers=None):
        self.send_response(code)
        self.std_headers(ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data):
        if isinstance(data, str):
            data = data.encode()
        if data:
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    # -- misbehaviours ------------------------------------------------------
    def rst(self):
        """Abort the connection with a TCP RST (SO_LINGER 0, no TLS close_notify)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass

    def break_off(self, fault, more):
        """The answer breaks off mid-body (its head and some of it are
        out, in chunks): reset, stall, close cleanly (no last chunk), cut
        a chunk in its middle (its size line says more than comes), or
        garble the framing.  more: what the next chunk would have held."""
        self.close_connection = True
        if fault == "cut_chunk":
            self.wfile.write(b"%X\r\n" % (len(more) + 10) + more[:len(more) // 2])
        elif fault == "bad_chunk":
            self.wfile.write(b"zz-not-a-size\r\n" + more + b"\r\n")
        try:
            self.wfile.flush()
        except OSError:
            pass
        if fault == "reset_midstream":
            self.rst()
        elif fault == "stall_midstream":
            self.stall()

    def cut_answer(self, data, fault, chunked):
        """A whole answer (data) cut in its middle by fault: framed by
        Content-Length (fewer bytes come), or chunked (the first half in
        a chunk, then break_off)."""
        half = data[:len(data) // 2]
        if chunked:
            self.start_chunked(200, "application/json; charset=UTF-8")
            self.write_chunk(half)
            self.break_off(fault, data[len(half):])
            return
        self.send_response(200)
        self.std_headers("application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(half)
        self.break_off(fault, b"")

    def pause(self, seconds):
        """Waits seconds while generating, as Gemini does; False as soon
        as the client closes the connection (Gemini then stops).  Nothing
        arrives on a connection mid-answer but its end."""
        end = time.time() + seconds
        while not STOP.is_set():
            left = end - time.time()
            if left <= 0:
                return True
            try:
                r, _, _ = select.select([self.connection], [], [], min(left, 0.5))
            except (OSError, ValueError):
                return False
            if r:
                return False

    def stall(self, seconds=3600.0):
        """Send nothing until the client goes away (or the stand-in stops)."""
        self.close_connection = True
        sock = self.connection
        try:
            sock.settimeout(0.5)
        except OSError:
            return
        end = time.time() + seconds
        while not STOP.is_set() and time.time() < end:
            try:
                r, _, _ = select.select([sock], [], [], 0.5)
            except (OSError, ValueError):
                return
            if not r:
                continue
            try:
                data = sock.recv(4096)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (OSError, ssl.SSLError):
                return
            if not data:
                return

    # -- dispatch -----------------------------------------------------------
    def do_GET(self):
        self.dispatch()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = do_GET

    def dispatch(self):
        st = self.server.state
        self.t0 = time.time()
        self.body_bytes = None
        try:
            self.body_bytes = self.read_body()
        except (ValueError, OSError):
            self.send_error(400, "Malformed request body.")
            return
        # @google/genai joins its base URL's "/" and "/ws/...": "//ws/..." is a
        # path there, not a network location.
        url = urllib.parse.urlsplit(
            ("http://h" + self.path) if re.match(r"^//+ws/", self.path) else self.path)
        self.url_path = urllib.parse.unquote(url.path)
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        self.openai = "/openai/" in self.url_path or self.url_path.endswith("/openai")
        # Errors on streamGenerateContent without alt=sse come as a JSON array,
        # like every error of the OpenAI-compatible endpoints.
        self.array_errors = self.openai or (
            self.url_path.endswith(":streamGenerateContent")
            and (self.query.get("alt") or [""])[0] != "sse")
        self.entry = {"path": self.url_path, "method": self.command}
        self.echo_headers = {}
        self.close_after = False
        if not self.url_path.startswith("/__standin/"):
            self.entry["credentials"] = self.all_credentials()
            self.entry["host"] = self.headers.get("Host")
        try:
            if self.url_path.startswith("/__standin/"):
                self.admin(st)
                return
            m = LIVE_PATH_RE.match(self.url_path)
            if m:
                self.live(st, m.group(1))
                return
            self.route(st)
        except Reply as r:
            self.finish_reply(st, r)
        except (BrokenPipeError, ConnectionError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        except OSError:
            self.close_connection = True

    def finish_reply(self, st, r):
        if isinstance(r.body, (str, bytes)):
            # A body written by hand (escapes json.dumps never makes).
            self.log_entry(st, r.code)
            self.send_body(r.code, r.body, headers=r.headers)
            return
        err = r.body.get("error") if isinstance(r.body, dict) else None
        if err is not None:
            self.entry.setdefault("error_status", err.get("status"))
        self.log_entry(st, r.code)
        self.send_obj(r.code, r.body, headers=r.headers, wrap=self.array_errors and err is not None)

    def log_entry(self, st, status, **extra):
        e = dict(self.entry)
        e["status"] = status
        e.update(extra)
        for k in ("prompt", "candidates", "cached", "thoughts", "total"):
            e.setdefault(k, 0)
        e.setdefault("stream", False)
        with st.lock:
            return st.add_log(e)

    # -- admin --------------------------------------------------------------
    def admin(self, st):
        p = self.url_path[len("/__standin/"):].strip("/")
        if p == "healthz":
            self.send_plain_json(200, {"ok": True, "time": time.time()})
        elif p == "log" and self.command == "GET":
            since = int((self.query.get("since") or ["0"])[0] or 0)
            with st.lock:
                out = [dict(e) for e in st.log if e["seq"] > since]
            self.send_plain_json(200, out)
        elif p == "config" and self.command == "GET":
            with st.lock:
                self.send_plain_json(200, st.config)
        elif p == "config" and self.command in ("POST", "PUT"):
            try:
                new = json.loads(self.body_bytes or b"{}")
                if not isinstance(new, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                self.send_plain_json(400, {"error": "bad config: %s" % e})
                return
            replace = self.command == "PUT" or (self.query.get("replace") or ["0"])[0] in ("1", "true")
            replace = bool(new.pop("_replace", replace))
            with st.lock:
                st.merge_config(new, replace=replace)
                cfg = copy.deepcopy(st.config)
            self.send_plain_json(200, cfg)
        elif p == "reset_day" and self.command == "POST":
            with st.lock:
                st.days = {}
                st.day_started = time.time()
            self.send_plain_json(200, {"ok": True})
        elif p == "reset_minute" and self.command == "POST":
            with st.lock:
                st.windows = {}
            self.send_plain_json(200, {"ok": True})
        elif p == "reset" and self.command == "POST":
            with st.lock:
                st.reset_all()
            self.send_plain_json(200, {"ok": True})
        elif p == "probes" and self.command == "GET":
            with st.lock:
                self.send_plain_json(200, st.probe_counts())
        elif p == "usage" and self.command == "GET":
            with st.lock:
                self.send_plain_json(200, st.usage_snapshot())
        else:
            self.send_plain_json(404, {"error": "unknown admin endpoint"})

    # -- authentication -----------------------------------------------------
    def all_credentials(self):
        """Every credential the request carried, by source (for the log)."""
        out = {}
        hdr = self.headers.get("x-goog-api-key")
        if hdr:
            out["header"] = hdr.strip()
        q = (self.query.get("key") or [None])[0]
        if q:
            out["query"] = q
        q = (self.query.get("access_token") or [None])[0]
        if q:
            out["access_token"] = q
        auth = self.headers.get("Authorization")
        if auth:
            out["bearer" if auth[:7].lower() == "bearer " else "authorization"] = (
                auth[7:].strip() if auth[:7].lower() == "bearer " else auth)
        return out

    def credentials(self):
        hdr = self.headers.get("x-goog-api-key")
        q = (self.query.get("key") or [None])[0]
        auth = self.headers.get("Authorization") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if self.openai and bearer:
            return bearer, "bearer"
        if hdr:
            return hdr.strip(), "header"
        if q:
            return q, "query"
        if bearer:
            return bearer, "bearer"
        return None, None

    def method_name(self):
        ver = "v1beta" if "/v1beta/" in self.url_path else "v1"
        p = self.url_path
        if ":" in p.rsplit("/", 1)[-1]:
            action = p.rsplit(":", 1)[-1]
            svc = "GenerativeService"
            name = action[:1].upper() + action[1:]
        elif "/files" in p:
            svc, name = "FileService", {"GET": "ListFiles", "POST": "CreateFile",
                                        "DELETE": "DeleteFile"}.get(self.command, "GetFile")
        elif "/cachedContents" in p:
            svc, name = "CacheService", {"GET": "ListCachedContents", "POST": "CreateCachedContent",
                                         "PATCH": "UpdateCachedContent",
                                         "DELETE": "DeleteCachedContent"}.get(self.command, "GetCachedContent")
        else:
            svc, name = "ModelService", "ListModels" if p.rstrip("/").endswith("models") else "GetModel"
        return "google.ai.generativelanguage.%s.%s.%s" % (ver, svc, name)

    def authenticate(self, st, cred=None):
        key, source = cred or self.credentials()
        self.entry["key"] = key
        self.entry["key_source"] = source
        if key is None:
            raise Reply(403, error_obj(
                403, "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API."))
        if source == "bearer" and not self.openai:
            raise Reply(401, error_obj(
                401, "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                  "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                  "metadata": {"method": self.method_name(), "service": SERVICE}}]))
        with st.lock:
            info = st.key_info(key)
        state = (info or {}).get("state", "invalid")
        if info is not None:
            self.entry["project"] = info["project"]
        if state in ("invalid", "unknown") or info is None:
            msg = "API key not valid. Please pass a valid API key."
            raise Reply(400, error_obj(400, "INVALID_ARGUMENT", msg, [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                 "metadata": {"service": SERVICE}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                 "locale": "en-US", "message": msg}]))
        consumer = "projects/" + info["number"]
        if state == "suspended":
            raise Reply(403, error_obj(
                403, "PERMISSION_DENIED",
                "Permission denied: Consumer 'api_key:%s' has been suspended." % key,
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                  "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com",
                  "metadata": {"containerInfo": "api_key:%s" % key,
                               "service": SERVICE, "consumer": consumer}}]))
        if state == "blocked":
            m = self.method_name()
            msg = "Requests to this API %s method %s are blocked." % (SERVICE, m)
            raise Reply(403, error_obj(403, "PERMISSION_DENIED", msg, [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                 "reason": "API_KEY_SERVICE_BLOCKED", "domain": "googleapis.com",
                 "metadata": {"consumer": consumer, "service": SERVICE,
                              "apiName": SERVICE, "methodName": m}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                 "locale": "en-US", "message": msg}]))
        if state == "leaked":
            raise Reply(403, error_obj(403, "PERMISSION_DENIED",
                                       "Your API key was reported as leaked. Please use another API key."))
        if state == "denied":
            raise Reply(403, error_obj(403, "PERMISSION_DENIED",
                                       "Your project has been denied access. Please contact support."))
        return info

    # -- the Live API -------------------------------------------------------
    def live(self, st, version):
        """A BidiGenerateContent WebSocket: the handshake (RFC 6455), then a
        LiveSession until either side closes.  One log entry per session,
        written when it ends."""
        self.live_version = version
        self.entry["kind"] = "live"
        # The path as the client sent it: http.server folds a leading "//"
        # into "/" (Python 3.11+), and @google/genai sends "//ws/...".
        parts = self.requestline.split()
        if len(parts) >= 2:
            self.entry["path"] = urllib.parse.unquote(parts[1].split("?", 1)[0])
        self.entry["stream"] = True
        self.close_connection = True
        h = self.headers
        if self.command != "GET":
            self.not_found()
        conn = [t.strip().lower() for t in (h.get("Connection") or "").split(",")]
        if (h.get("Upgrade") or "").strip().lower() != "websocket" or "upgrade" not in conn:
            raise Reply(400, status_error(400, "Request contains an invalid argument. "
                                               "A WebSocket upgrade is expected."))
        if (h.get("Sec-WebSocket-Version") or "").strip() != "13":
            self.entry["error_status"] = "UPGRADE_REQUIRED"
            raise Reply(426, status_error(400, "Sec-WebSocket-Version 13 is required."),
                        {"Sec-WebSocket-Version": "13"})
        wskey = (h.get("Sec-WebSocket-Key") or "").strip()
        try:
            if len(base64.b64decode(wskey, validate=True)) != 16:
                raise ValueError("not 16 bytes")
        except ValueError:
            raise Reply(400, status_error(400, "Request contains an invalid argument. "
                                               "Bad Sec-WebSocket-Key."))
        hdr = (h.get("x-goog-api-key") or "").strip()
        qkey = (self.query.get("key") or [None])[0]
        qtok = (self.query.get("access_token") or [None])[0]
        cred = ((hdr, "header") if hdr else (qkey, "query") if qkey
                else (qtok, "access_token") if qtok else (None, None))
        # Google answers the handshake whatever the key, and refuses a bad
        # one by closing the socket once setup comes: 1007 for a key that
        # is not valid, 1008 for one that may not be used.
        self.live_auth_error = None
        info = None
        try:
            if cred[0] is None:
                self.entry["key"], self.entry["key_source"] = None, None
                raise Reply(403, status_error(403, "Method doesn't allow unregistered callers "
                                                   "(callers without established identity). "
                                                   "Please use API Key or other form of API "
                                                   "consumer identity to call this API."))
            info = self.authenticate(st, cred)
        except Reply as r:
            err = r.body["error"]
            self.entry["error_status"] = err.get("status")
            self.live_auth_error = (1007 if r.code == 400 else 1008, err["message"])
        with st.lock:
            live = st.config.get("live") or {}
            refuse = int(live.get("refuse_handshakes") or 0) > 0
            if refuse:
                live["refuse_handshakes"] = int(live["refuse_handshakes"]) - 1
                status = int(live.get("refuse_handshake_status", 429))
        if refuse:
            # A handshake refused with an HTTP answer (a proxy in front of
            # Google, or a quota check at the door): 429 in the quota shape.
            self.entry["refused"] = True
            if status == 429:
                raise self.quota_reply(st, "live", [("rpm", 10, 30.0)])
            raise Reply(status, status_error(status))
        accept = base64.b64encode(hashlib.sha1((wskey + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        with st.lock:
            cfg = dict(LIVE_DEFAULTS)
            cfg.update(st.config.get("live") or {})
        ws = WebSocket(self.rfile, self.wfile, int(cfg["max_message"]))
        sess = LiveSession(self, st, ws, info, cfg)
        try:
            sess.run()
        except WSClosed:
            pass
        except WSError as e:
            sess.closed_by, sess.close = "server", (e.code, e.reason)
            self.entry["protocol_error"] = e.reason
            ws.send_close(e.code, e.reason)
        except (OSError, ssl.SSLError, ValueError):
            pass
        if sess.closed_by is None:
            sess.closed_by = "client" if ws.close_received else "eof"
            if ws.close_received:
                sess.close = ws.close_received
        elif ws.close_received is None:
            ws.wait_close(self.connection, float(cfg["close_wait_s"]))
        u = sess.usage
        self.log_entry(st, 101, prompt=u["promptTokenCount"], candidates=u["responseTokenCount"],
                       total=u["totalTokenCount"], usage=u, version=version,
                       constrained=self.url_path.endswith("Constrained"),
                       received=sess.received, sent=sess.sent, turns=sess.turns,
                       close_code=(sess.close or (None,))[0],
                       close_reason=(sess.close or (None, None))[1],
                       closed_by=sess.closed_by,
                       client_close=list(ws.close_received) if ws.close_received else None,
                       handles=sess.handles, resumed=sess.resumed,
                       audio_bytes=sess.audio_total, pings=ws.pings)
        # Logged before the TCP close: a client that saw the end finds its entry.
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routing ------------------------------------------------------------
    def json_body(self):
        raw = self.body_bytes or b""
        if not raw.strip():
            return {}
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            snippet = raw[:40].decode("utf-8", "replace")
            col = getattr(e, "colno", 1)
            msg = "Invalid JSON payload received. Unexpected token.\n%s\n%s^" % (
                snippet, " " * max(0, min(col, len(snippet)) - 1))
            raise Reply(400, error_obj(400, "INVALID_ARGUMENT", msg, [
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"description": msg}]}]))
        if not isinstance(obj, dict):
            msg = ("Invalid JSON payload received. Unknown name \"\": Root element must be a "
                   "message.")
            raise Reply(400, error_obj(400, "INVALID_ARGUMENT", msg, [
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"description": msg}]}]))
        return obj

    def not_found(self):
        raise Reply(404, error_obj(404, "NOT_FOUND", "Method not found."))

    def route(self, st):
        p = self.url_path
        m = re.match(r"^/upload/(v1beta|v1|v1alpha)/(files/?|fileSearchStores/"
                     r"[A-Za-z0-9_-]+:uploadToFileSearchStore)$", p)
        if m:
            self.upload(st)
            return
        m = re.match(r"^/(v1beta|v1|v1alpha)/(.*)$", p)
        if not m:
            self.not_found()
        rest = m.group(2).rstrip("/")
        if rest.startswith("openai/") or rest == "openai":
            self.route_openai(st, rest[len("openai/"):])
            return
        cmd = self.command
        if rest == "models" and cmd == "GET":
            self.list_models(st)
            return
        mm = re.match(r"^(?:models|tunedModels)/([^:/]+)(?::([A-Za-z]+))?$", rest)
        if mm:
            model, action = mm.group(1), mm.group(2)
            self.entry["model"] = model
            if action is None and cmd == "GET":
                self.get_model(st, model)
                return
            if cmd != "POST" or action is None:
                self.not_found()
            if action == "generateContent":
                self.generate(st, model, stream=False)
            elif action == "streamGenerateContent":
                self.generate(st, model, stream=True)
            elif action == "countTokens":
                self.count_tokens(st, model)
            elif action in ("embedContent", "batchEmbedContents"):
                self.embed(st, model, batch=(action == "batchEmbedContents"))
            elif action in ("batchGenerateContent", "asyncBatchEmbedContent"):
                self.batch_create(st, model, action)
            elif action == "predictLongRunning":
                self.lro_create(st, model)
            else:
                self.not_found()
            return
        if self.route_jobs(st, rest, cmd):
            return
        if rest == "files" and cmd == "GET":
            self.list_files(st)
            return
        mm = re.match(r"^files/([A-Za-z0-9_-]+)$", rest)
        if mm and cmd in ("GET", "DELETE"):
            self.file_op(st, mm.group(1))
            return
        if rest == "cachedContents" and cmd in ("GET", "POST"):
            self.caches_collection(st)
            return
        mm = re.match(r"^cachedContents/([A-Za-z0-9_-]+)$", rest)
        if mm and cmd in ("GET", "PATCH", "DELETE"):
            self.cache_op(st, mm.group(1))
            return
        self.not_found()

    # -- models -------------------------------------------------------------
    def model_list(self, st):
        return list(st.config.get("models") or DEFAULT_MODELS)

    def check_model(self, st, model, method="generateContent"):
        known = st.config.get("models")
        if known and model not in known:
            ver = "v1beta" if "/v1beta/" in self.url_path else "v1"
            raise Reply(404, error_obj(
                404, "NOT_FOUND",
                "models/%s is not found for API version %s, or is not supported for %s. "
                "Call ListModels to see the list of available models and their supported "
                "methods." % (model, ver, method)))

    @staticmethod
    def model_resource(name):
        embed = "embedding" in name
        pretty_name = " ".join(w.capitalize() for w in name.replace("-", " ").split())
        res = {"name": "models/" + name, "version": "001", "displayName": pretty_name,
               "description": "Stand-in for %s." % name,
               "inputTokenLimit": 2048 if embed else 1048576,
               "outputTokenLimit": 1 if embed else 65536,
               "supportedGenerationMethods": (
                   ["embedContent", "countTextTokens", "countTokens"] if embed else
                   ["generateContent", "countTokens", "createCachedContent",
                    "batchGenerateContent"])}
        if not embed:
            res.update({"temperature": 1, "topP": 0.95, "topK": 64, "maxTemperature": 2,
                        "thinking": True})
        return res

    def list_models(self, st):
        try:
            size = int((self.query.get("pageSize") or ["50"])[0] or 50)
        except ValueError:
            size = 50
        # Logged whatever the answer: a models list of one is how a proxy
        # checks a key without spending quota (GET /__standin/probes).
        self.entry["page_size"] = size
        self.authenticate(st)
        names = self.model_list(st)
        size = max(1, min(size, 1000))
        tok = (self.query.get("pageToken") or [""])[0]
        try:
            start = int(base64.urlsafe_b64decode(tok + "==").decode()) if tok else 0
        except (ValueError, UnicodeDecodeError):
            raise Reply(400, status_error(400, "Invalid page token."))
        page = names[start:start + size]
        out = {"models": [self.model_resource(n) for n in page]}
        if start + size < len(names):
            out["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode().rstrip("=")
        self.log_entry(st, 200)
        self.send_obj(200, out)

    def get_model(self, st, model):
        self.authenticate(st)
        known = st.config.get("models")
        if known and model not in known:
            raise Reply(404, error_obj(404, "NOT_FOUND", "models/%s is not found for API version %s" %
                                       (model, "v1beta" if "/v1beta/" in self.url_path else "v1")))
        self.log_entry(st, 200)
        self.send_obj(200, self.model_resource(model))

    # -- ownership checks ---------------------------------------------------
    def file_denied(self, fid):
        return Reply(403, error_obj(
            403, "PERMISSION_DENIED",
            "You do not have permission to access the File %s or it may not exist." % fid))

    def cache_denied(self, cid):
        return Reply(403, error_obj(403, "PERMISSION_DENIED",
                                    "CachedContent not found (or permission denied)"))

    def check_refs(self, st, info, body):
        """Explicit cache tokens; raises 403 for another project's file or cache."""
        cached = 0
        with st.lock:
            for fid in gemini_file_ids(body):
                f = st.files.get(fid)
                if f is None or f["_project"] != info["project"]:
                    raise self.file_denied(fid)
            for tool in body.get("tools") or []:
                fs = (tool or {}).get("fileSearch") or {}
                for sname in fs.get("fileSearchStoreNames") or []:
                    sid = str(sname).split("/", 1)[-1]
                    store = st.stores.get(sid)
                    if store is None or store["_project"] != info["project"]:
                        raise self.denied()
            cname = body.get("cachedContent") or body.get("cached_content")
            if cname:
                cid = str(cname).rsplit("/", 1)[-1]
                c = st.caches.get(cid)
                if c is None or c["_project"] != info["project"]:
                    raise self.cache_denied(cid)
                cached = c["_tokens"]
        return cached

    # -- batches, long-running operations, file search stores --------------
    # Each belongs to the project that made it: another project's key gets
    # 403 PERMISSION_DENIED "The caller does not have permission", as Google
    # answers for resources of other projects.  A batch goes PENDING ->
    # RUNNING -> SUCCEEDED one step per GET; an operation is done at its
    # second GET (config "job_polls" changes how many GETs it takes).
    def denied(self):
        return Reply(403, error_obj(403, "PERMISSION_DENIED",
                                    "The caller does not have permission"))

    def owned(self, st, table, key, info):
        with st.lock:
            r = table.get(key)
            if r is None or r["_project"] != info["project"]:
                raise self.denied()
            return r

    BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
    EMBED_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch"

    def batch_create(self, st, model, action):
        info = self.authenticate(st)
        self.check_model(st, model, action)
        self.entry["kind"] = "batch_create"
        body = self.json_body()
        batch = body.get("batch") or {}
        cfg = batch.get("inputConfig") or {}
        fname = cfg.get("fileName")
        if fname:
            fid = str(fname).split("/", 1)[-1]
            with st.lock:
                f = st.files.get(fid)
            if f is None or f["_project"] != info["project"]:
                raise self.file_denied(fid)
        reqs = ((cfg.get("requests") or {}).get("requests") or [])
        if not fname and not reqs:
            raise Reply(400, status_error(400, "* BatchGenerateContentRequest.batch."
                                          "input_config: input_config is required\n"))
        now = time.time()
        bid = rand_id(24, string.ascii_lowercase + string.digits)
        n = len(reqs) if reqs else 1
        meta = {"@type": self.EMBED_BATCH_TYPE if action.startswith("async")
                else self.BATCH_TYPE,
                "model": "models/" + model, "displayName": batch.get("displayName", ""),
                "createTime": rfc3339(now), "updateTime": rfc3339(now),
                "batchStats": {"requestCount": str(n), "pendingRequestCount": str(n)},
                "state": "BATCH_STATE_PENDING", "name": "batches/" + bid}
        with st.lock:
            st.batches[bid] = dict(meta, _project=info["project"], _polls=0,
                                   _n=n, _file=bool(fname))
        self.entry["batch"] = bid
        self.log_entry(st, 200)
        self.send_obj(200, {"name": "batches/" + bid, "metadata": meta})

    def batch_view(self, st, b):
        pub = self.public(b)
        out = {"name": b["name"], "metadata": pub}
        if b["state"] in ("BATCH_STATE_SUCCEEDED", "BATCH_STATE_CANCELLED",
                          "BATCH_STATE_FAILED", "BATCH_STATE_EXPIRED"):
            out["done"] = True
            out["response"] = dict(pub.get("output") or {},
                                   **{"@type": pub["@type"] + "Output"})
        return out

    def batch_step(self, st, b):
        """One GET: the batch moves on (under st.lock)."""
        steps = int(st.config.get("job_polls", 1))
        b["_polls"] += 1
        if b["state"] == "BATCH_STATE_PENDING":
            b["state"] = "BATCH_STATE_RUNNING"
        elif b["state"] == "BATCH_STATE_RUNNING" and b["_polls"] > steps:
            b["state"] = "BATCH_STATE_SUCCEEDED"
            b["endTime"] = b["updateTime"] = rfc3339(time.time())
            n = b["_n"]
            b["batchStats"] = {"requestCount": str(n), "successfulRequestCount": str(n)}
            if b["_file"]:
                fid = "batch-" + rand_id(12, string.ascii_lowercase + string.digits)
                st.files[fid] = {"name": "files/" + fid, "mimeType": "application/jsonl",
                                 "state": "ACTIVE", "source": "GENERATED",
                                 "_project": b["_project"]}
                b["output"] = {"responsesFile": "files/" + fid}
            else:
                b["output"] = {"inlinedResponses": {"inlinedResponses": [
                    {"response": {"candidates": [{"content": {"parts": [{"text": "ok"}],
                                                              "role": "model"}}]}}] * n}}

    def route_jobs(self, st, rest, cmd):
        """batches/..., models/m/operations/..., fileSearchStores/...; False
        when rest is none of them."""
        m = re.match(r"^batches/([A-Za-z0-9_-]+)(:cancel)?$", rest)
        if rest == "batches" and cmd == "GET":
            info = self.authenticate(st)
            with st.lock:
                mine = [self.batch_view(st, b) for b in st.batches.values()
                        if b["_project"] == info["project"]]
            self.log_entry(st, 200)
            self.send_obj(200, {"operations": mine} if mine else {})
        elif m and (cmd, bool(m.group(2))) in (("GET", False), ("DELETE", False),
                                               ("POST", True)):
            info = self.authenticate(st)
            self.entry["batch"] = m.group(1)
            b = self.owned(st, st.batches, m.group(1), info)
            with st.lock:
                if cmd == "DELETE":
                    st.batches.pop(m.group(1), None)
                    out = {}
                elif cmd == "POST":
                    if b["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                        b["state"] = "BATCH_STATE_CANCELLED"
                    out = {}
                else:
                    self.batch_step(st, b)
                    out = self.batch_view(st, b)
            self.log_entry(st, 200)
            self.send_obj(200, out)
        elif re.match(r"^(models/[^/:]+|fileSearchStores/[A-Za-z0-9_-]+(/upload)?)"
                      r"/operations/[A-Za-z0-9_-]+$", rest) and cmd == "GET":
            self.op_get(st, rest)
        elif rest.startswith("fileSearchStores"):
            self.route_stores(st, rest, cmd)
        else:
            return False
        return True

    def lro_create(self, st, model):
        info = self.authenticate(st)
        self.check_model(st, model, "predictLongRunning")
        self.entry["kind"] = "lro_create"
        self.json_body()
        name = "models/%s/operations/%s" % (model, rand_id(12, string.ascii_lowercase +
                                                             string.digits))
        with st.lock:
            st.operations[name] = {"name": name, "_project": info["project"],
                                   "_polls": 0, "_video": True}
        self.log_entry(st, 200)
        self.send_obj(200, {"name": name})

    def op_get(self, st, name):
        info = self.authenticate(st)
        self.entry["operation"] = name
        op = self.owned(st, st.operations, name, info)
        with st.lock:
            op["_polls"] += 1
            if not op.get("done") and op["_polls"] > int(st.config.get("job_polls", 1)):
                op["done"] = True
                if op.get("_video"):
                    fid = rand_id(12, string.ascii_lowercase + string.digits)
                    st.files[fid] = {"name": "files/" + fid, "mimeType": "video/mp4",
                                     "state": "ACTIVE", "source": "GENERATED",
                                     "_project": op["_project"]}
                    op["response"] = {
                        "@type": "type.googleapis.com/google.ai.generativelanguage."
                                 "v1beta.PredictLongRunningResponse",
                        "generateVideoResponse": {"generatedSamples": [{"video": {
                            "uri": "%s/v1beta/files/%s:download?alt=media" % (
                                self.base_url(), fid)}}]}}
            out = self.public(op)
        self.log_entry(st, 200)
        self.send_obj(200, out)

    def store_doc(self, st, store, display):
        """A document in store (under st.lock): its name."""
        did = rand_id(12, string.ascii_lowercase + string.digits)
        name = "%s/documents/%s" % (store["name"], did)
        store["_docs"][did] = {"name": name, "displayName": display,
                               "state": "STATE_ACTIVE", "createTime": rfc3339(time.time())}
        return name

    def store_op(self, st, store, doc, upload=False):
        """A finished import/upload operation on store (under st.lock)."""
        name = "%s/%soperations/%s" % (store["name"], "upload/" if upload else "",
                                       rand_id(12, string.ascii_lowercase + string.digits))
        op = {"name": name, "done": True, "_project": store["_project"], "_polls": 0,
              "response": {"@type": "type.googleapis.com/google.ai.generativelanguage."
                                    "v1main.%sResponse" % ("UploadToFileSearchStore"
                                                           if upload else "ImportFile"),
                           "parent": store["name"], "documentName": doc}}
        st.operations[name] = op
        return self.public(op)

    def route_stores(self, st, rest, cmd):
        info = self.authenticate(st)
        if rest == "fileSearchStores" and cmd in ("GET", "POST"):
            if cmd == "GET":
                with st.lock:
                    mine = [self.public(x) for x in st.stores.values()
                            if x["_project"] == info["project"]]
                self.log_entry(st, 200)
                self.send_obj(200, {"fileSearchStores": mine} if mine else {})
                return
            body = self.json_body()
            disp = str(body.get("displayName") or "store")
            sid = "%s-%s" % (re.sub(r"[^a-z0-9]+", "", disp.lower())[:20] or "store",
                             rand_id(12, string.ascii_lowercase + string.digits))
            now = rfc3339(time.time())
            res = {"name": "fileSearchStores/" + sid, "displayName": disp,
                   "createTime": now, "updateTime": now}
            with st.lock:
                st.stores[sid] = dict(res, _project=info["project"], _docs={})
            self.log_entry(st, 200)
            self.send_obj(200, res)
            return
        m = re.match(r"^fileSearchStores/([A-Za-z0-9_-]+)(:importFile|/documents"
                     r"(?:/([A-Za-z0-9_-]+))?)?$", rest)
        if not m:
            self.not_found()
        store = self.owned(st, st.stores, m.group(1), info)
        sub, did = m.group(2), m.group(3)
        with st.lock:
            if sub is None and cmd == "DELETE":
                st.stores.pop(m.group(1), None)
                out = {}
            elif sub is None and cmd == "GET":
                out = self.public(store)
            elif sub == ":importFile" and cmd == "POST":
                fname = str((json.loads(self.body_bytes or b"{}") or {}).get("fileName") or "")
                f = st.files.get(fname.split("/", 1)[-1])
                if f is None or f["_project"] != info["project"]:
                    raise self.file_denied(fname.split("/", 1)[-1])
                out = self.store_op(st, store, self.store_doc(st, store, fname))
            elif did is None and cmd == "GET":
                docs = list(store["_docs"].values())
                out = {"documents": docs} if docs else {}
            elif did is not None and did in store["_docs"] and cmd in ("GET", "DELETE"):
                out = store["_docs"][did] if cmd == "GET" else {}
                if cmd == "DELETE":
                    del store["_docs"][did]
            else:
                raise Reply(404, error_obj(404, "NOT_FOUND", "Requested entity was not found."))
        self.log_entry(st, 200)
        self.send_obj(200, out)

    # -- quota --------------------------------------------------------------
    def retry_delay_str(self, st, d):
        style = st.config.get("retry_delay_style", "floor")
        if style == "ms":
            return "%dms" % max(1, int(d * 1000))
        if style == "frac":
            return "%ss" % fmt_seconds(round(d, 2))
        if style == "ceil":
            return "%ds" % max(1, math.ceil(d))
        if d < 1:
            return "%dms" % max(1, int(d * 1000))
        return "%ds" % int(d)

    def quota_reply(self, st, model, viols, delay_override=None):
        minute = [v for v in viols if v[0] in ("rpm", "tpm")]
        delay = max(v[2] for v in minute) if minute else max(v[2] for v in viols)
        if delay_override is not None:
            delay = delay_override
        violations, lines = [], []
        for kind, limit, _ in viols:
            metric, qid = st.metric_names(kind)
            lines.append("* Quota exceeded for metric: %s, limit: %s, model: %s" % (metric, limit, model))
            violations.append({"quotaMetric": metric, "quotaId": qid,
                               "quotaDimensions": {"location": "global", "model": model},
                               "quotaValue": str(limit)})
        quota = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations}
        helpd = {"@type": "type.googleapis.com/google.rpc.Help",
                 "links": [{"description": "Learn more about Gemini API quotas",
                            "url": RATE_LIMIT_DOCS}]}
        retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                 "retryDelay": self.retry_delay_str(st, delay)}
        head = ("You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, head to: " + RATE_LIMIT_DOCS + ".")
        if st.config.get("error_style", "current") == "classic":
            msg = head + "\n" + "\n".join(lines) + "\nPlease retry in %ss." % fmt_seconds(round(delay, 2))
            details = [quota, helpd, retry]
        else:
            msg = (head + " To monitor your current usage, head to: https://ai.dev/rate-limit. \n"
                   + "\n".join(lines) + "\nPlease retry in %ss." % fmt_seconds(round(delay, 9)))
            details = [helpd, quota, retry]
        self.entry["quota"] = [v[0] for v in viols]
        self.entry["retry_delay"] = retry["retryDelay"]
        return Reply(429, error_obj(429, "RESOURCE_EXHAUSTED", msg, details))

    def throttled(self, st, info, model):
        """The Reply of a throttle in force for model (see Throttle), or None."""
        th = st.config.get("throttle")
        if not th or (th.get("models") is not None and model not in th["models"]):
            return None
        self.entry["throttled"] = True
        delay = th.get("retry_delay")
        if th.get("quota") in ("rpm", "tpm", "rpd", "tpd"):
            return self.forced_quota(st, info, model, th["quota"],
                                     float(delay) if delay is not None else None)
        body = status_error(429)
        if delay is not None:
            body["error"]["details"] = [{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": self.retry_delay_str(st, float(delay))}]
        return Reply(429, body)

    def forced_quota(self, st, info, model, kind, delay_override=None):
        lim = st.limits(info["project"], model)
        defaults = {"rpm": 10, "tpm": 250000, "rpd": 250, "tpd": 1000000}
        limit = lim.get(kind)
        if limit is None:
            limit = defaults[kind]
        d = 37.0 + random.random() if kind in ("rpm", "tpm") else float(st.config.get("day_retry_delay", 22.0))
        return self.quota_reply(st, model, [(kind, limit, d)], delay_override)

    def admit(self, st, info, model, text_bytes, prompt, count_quota=True, delay_override=None):
        """Check and account quota, compute the implicit cache; logs a 429 itself.

        Returns (cached implicit tokens, log record)."""
        now = time.time()
        with st.lock:
            viols = st.quota_violations(info["project"], model, prompt, now) if count_quota else []
            if not viols:
                if count_quota:
                    st.account(info["project"], model, prompt, now)
                nbytes = st.implicit_cached(info["project"], model, text_bytes)
                return (math.ceil(nbytes / 4) if nbytes else 0)
        raise self.quota_reply(st, model, viols, delay_override)

    # -- generation ---------------------------------------------------------
    def usage(self, prompt, cand, thoughts, cached, details=True, with_cand=True):
        u = {"promptTokenCount": prompt}
        if with_cand:
            u["candidatesTokenCount"] = cand
        u["totalTokenCount"] = prompt + (cand if with_cand else 0) + thoughts
        if cached:
            u["cachedContentTokenCount"] = cached
        if details:
            u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
            if cached:
                u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
        if thoughts:
            u["thoughtsTokenCount"] = thoughts
        return u

    def early_faults(self, st, fault):
        """Faults that happen before any answer. Returns True when handled."""
        if fault == "close_before_headers":
            self.log_entry(st, None, fault=fault)
            self.close_connection = True
            return True
        if fault == "garbage":
            self.log_entry(st, None, fault=fault)
            self.wfile.write(b"\x15\x03\x03\x00\x02GARBAGE \x00\xff\xfe not an HTTP answer\r\n\r\n\x01\x02")
            self.wfile.flush()
            self.close_connection = True
            return True
        if fault == "stall":
            self.log_entry(st, None, fault=fault)
            self.stall()
            return True
        return False

    def generate(self, st, model, stream):
        info = self.authenticate(st)
        self.check_model(st, model, "streamGenerateContent" if stream else "generateContent")
        body = self.json_body()
        sse = (self.query.get("alt") or [""])[0] == "sse"
        self.entry["stream"] = stream
        self.entry["kind"] = "stream" if stream else "generate"
        if not body.get("contents"):
            raise Reply(400, error_obj(
                400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified\n"))
        text = gemini_text(body)
        text_bytes = text.encode()
        magic = parse_magic(text)
        prompt = tokens_of(len(text_bytes))
        explicit = self.check_refs(st, info, body)
        prompt += explicit
        self.entry["request_tokens"] = prompt
        self.answer_generation(st, info, model, text_bytes, prompt, explicit, magic,
                               mode=("sse" if sse else "array") if stream else "json")

    def answer_generation(self, st, info, model, text_bytes, prompt, explicit, magic, mode):
        """Shared by native and OpenAI-compatible generation. mode: json|sse|array|oa|oa_sse."""
        fault = magic.get("fault")
        if fault and self.early_faults(st, fault):
            return
        key = self.entry.get("key")
        echo = magic.get("echo_key")
        self.close_after = magic.get("close") in ("1", "true")
        if echo == "header" and key:
            self.echo_headers = {"X-Debug-Key": key,
                                 "Link": "<https://example.invalid/?key=%s>" % key,
                                 "X-Escaped": "%" + "%02X" % ord(key[0]) + key[1:]}
        if "status" in magic:
            code = magic_int(magic, "status", 500, 100, 599)
            body = status_error(code)
            if echo in ("glued", "escaped", "long") and key:
                raise Reply(code, echo_body(code, body["error"]["status"], key, echo))
            if echo in ("1", "true") and key:
                # Google echoes keys in some error bodies ("Consumer
                # 'api_key:AIza...'"), in the message and in metadata.
                body["error"]["message"] += " Consumer 'api_key:%s'." % self.entry["key"]
                body["error"]["details"] = [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "INVALID_ARGUMENT_EXAMPLE", "domain": "googleapis.com",
                    "metadata": {"containerInfo": "api_key:%s" % self.entry["key"],
                                 "service": SERVICE}}]
            raise Reply(code, body)
        throttled = self.throttled(st, info, model)
        if throttled is not None:
            raise throttled
        retry = magic_int(magic, "retry_ms", -1, -1, 3600000)
        retry = retry / 1000.0 if retry >= 0 else None
        if magic.get("quota") in ("rpm", "tpm", "rpd", "tpd"):
            raise self.forced_quota(st, info, model, magic["quota"], retry)
        implicit = self.admit(st, info, model, text_bytes, prompt, delay_override=retry)
        cached = min(prompt, explicit + implicit)
        cand = magic_int(magic, "candidates", int(st.config.get("default_candidates", 10)))
        thoughts = magic_int(magic, "thoughts", 0)
        nchunks = magic_int(magic, "chunks", int(st.config.get("default_chunks", 3)), 1, 10000)
        delay = magic_int(magic, "delay_ms", 0, 0, 3600000) / 1000.0
        sleep = magic_int(magic, "sleep_ms", 0, 0, 3600000) / 1000.0
        total = prompt + cand + thoughts
        rec = self.log_entry(st, 200, prompt=prompt, candidates=cand, cached=cached,
                             thoughts=thoughts, total=total, fault=fault)
        if sleep and not self.pause(sleep):
            with st.lock:
                rec["completed"] = False
                rec["ended"] = time.time()
            self.close_connection = True
            return
        rid = rand_id()
        legacy = magic.get("legacy_usage") in ("1", "true")
        streaming = mode in ("sse", "array", "oa_sse")
        n = nchunks if streaming else 1
        texts = answer_texts(n, cand)
        events = []
        for i in range(n):
            last = i == n - 1
            cum = cand * (i + 1) // n
            if mode.startswith("oa"):
                events.append(self.oa_chunk(rid, model, texts[i], last, prompt, cum, thoughts,
                                            cached, streaming, i == 0))
                continue
            cnd = {"content": {"parts": [{"text": texts[i]}], "role": "model"}}
            if last:
                cnd["finishReason"] = "STOP"
            cnd["index"] = 0
            u = self.usage(prompt, cum, thoughts, cached, with_cand=(last or not legacy))
            events.append({"candidates": [cnd], "usageMetadata": u,
                           "modelVersion": model, "responseId": rid})
        if mode == "json" or mode == "oa":
            obj = events[0]
            chunked = magic.get("framing") == "chunked"
            if fault in MIDSTREAM_FAULTS:
                self.cut_answer((pretty(obj) + "\n").encode(), fault, chunked)
                return
            if chunked:
                self.start_chunked(200, "application/json; charset=UTF-8")
                self.write_chunk(pretty(obj) + "\n")
                self.end_chunked()
                return
            if mode == "oa":
                self.send_body(200, pretty(obj) + "\n")
            else:
                self.send_obj(200, obj)
            return
        self.stream_events(st, mode, events, delay, fault, rec)

    def stream_events(self, st, mode, events, delay, fault, rec):
        """Streams the events; the log record shows how far it got:
        events_sent, then completed true (all sent) or false (the client went
        away, or a fault cut the stream)."""
        with st.lock:
            rec["events_sent"] = 0
            rec["completed"] = None
        try:
            done = self._stream_events(st, mode, events, delay, fault, rec)
        except BaseException:
            with st.lock:
                rec["completed"] = False
                rec["ended"] = time.time()
            raise
        with st.lock:
            rec["completed"] = bool(done)
            rec["ended"] = time.time()

    def _stream_events(self, st, mode, events, delay, fault, rec):
        if mode == "array":
            ctype = "application/json; charset=UTF-8"
        else:
            ctype = "text/event-stream"
        self.start_chunked(200, ctype)
        sep = st.config.get("openai_sse_separator", "\n\n")
        for i, ev in enumerate(events):
            if i and delay and not self.pause(delay):
                self.close_connection = True
                return False
            if mode == "sse":
                data = "data: " + oneline(ev) + "\r\n\r\n"
            elif mode == "oa_sse":
                data = "data: " + compact(ev) + sep
            else:
                data = ("[" if i == 0 else "\n,\r\n") + pretty(ev)
            self.write_chunk(data)
            with st.lock:
                rec["events_sent"] = i + 1
            if i == 0 and fault in MIDSTREAM_FAULTS:
                self.break_off(fault, data.encode())
                return False
            if i == 0 and fault == "error_midstream" and len(events) > 0:
                err = status_error(503)
                if mode == "sse":
                    self.write_chunk("data: " + oneline(err) + "\r\n\r\n")
                elif mode == "oa_sse":
                    self.write_chunk("data: " + compact(err) + sep)
                else:
                    self.write_chunk("\n,\r\n" + pretty(err) + "\n]")
                self.end_chunked()
                return False
        if mode == "array":
            self.write_chunk("\n]")
        elif mode == "oa_sse":
            self.write_chunk("data: [DONE]" + sep)
        self.end_chunked()
        return True

    # -- countTokens / embeddings ------------------------------------------
    def count_tokens(self, st, model):
        info = self.authenticate(st)
        self.check_model(st, model, "countTokens")
        body = self.json_body()
        self.entry["kind"] = "count"
        inner = body.get("generateContentRequest") or body
        text = gemini_text(inner)
        # countTokens has a quota of its own: STANDIN:quota=rpm says it
        # is spent (the generation quotas are untouched).
        if parse_magic(text).get("quota") in ("rpm", "rpd"):
            raise self.forced_quota(st, info, model, parse_magic(text)["quota"])
        n = tokens_of(len(text.encode())) + self.check_refs(st, info, inner)
        self.entry["request_tokens"] = n
        self.log_entry(st, 200, prompt=n, total=n)
        self.send_obj(200, {"totalTokens": n,
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]})

    def embed(self, st, model, batch):
        self.authenticate(st)
        body = self.json_body()
        dims = int(st.config.get("embedding_dims", 16))
        self.entry["kind"] = "embed"
        reqs = body.get("requests") if batch else [body]
        if batch and not isinstance(reqs, list):
            raise Reply(400, error_obj(400, "INVALID_ARGUMENT",
                                       "* BatchEmbedContentsRequest.requests: requests is not specified\n"))
        texts = []
        for r in reqs:
            out = []
            _parts_text((r or {}).get("content") or {}, out)
            texts.append("".join(out))
        n = sum(tokens_of(len(t.encode())) for t in texts)
        magic = parse_magic("".join(texts))
        if "status" in magic:
            code = magic_int(magic, "status", 500, 100, 599)
            raise Reply(code, status_error(code))
        self.log_entry(st, 200, prompt=n, total=n)
        if batch:
            self.send_obj(200, {"embeddings": [{"values": embedding_values(t, dims)} for t in texts]})
        else:
            self.send_obj(200, {"embedding": {"values": embedding_values(texts[0], dims)}})

    # -- files --------------------------------------------------------------
    def base_url(self):
        host = self.headers.get("Host") or "%s:%d" % self.server.server_address[:2]
        return "https://" + host

    def upload(self, st):
        cmd = (self.headers.get("X-Goog-Upload-Command") or "").lower().replace(" ", "")
        upload_id = (self.query.get("upload_id") or [None])[0]
        self.entry["kind"] = "upload"
        if upload_id is None:
            info = self.authenticate(st)
            proto = (self.headers.get("X-Goog-Upload-Protocol") or "").lower()
            if self.command != "POST" or proto != "resumable" or cmd != "start":
                raise Reply(400, status_error(400, "Upload protocol not supported by the stand-in: "
                                              "use X-Goog-Upload-Protocol: resumable."))
            body = self.json_body()
            meta = body.get("file") or body
            store = re.search(r"fileSearchStores/([A-Za-z0-9_-]+):", self.url_path)
            if store:
                self.owned(st, st.stores, store.group(1), info)
            uid = "AHxI" + rand_id(60)
            size = self.headers.get("X-Goog-Upload-Header-Content-Length")
            mime = self.headers.get("X-Goog-Upload-Header-Content-Type") or meta.get("mimeType") \
                or "application/octet-stream"
            with st.lock:
                st.uploads[uid] = {"project": info["project"], "meta": meta, "mime": mime,
                                   "declared": int(size) if size and size.isdigit() else None,
                                   "data": bytearray(), "done": False,
                                   "store": store.group(1) if store else None}
            url = "%s%s?upload_id=%s&upload_protocol=resumable" % (
                self.base_url(), self.url_path, uid)
            if st.config.get("upload_url_key"):
                url = "%s%s?key=%s&upload_id=%s&upload_protocol=resumable" % (
                    self.base_url(), self.url_path, self.entry["key"], uid)
            self.log_entry(st, 200)
            self.send_body(200, b"", ctype="text/plain; charset=utf-8", headers={
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Url": url,
                "X-Goog-Upload-Control-Url": url,
                "X-Goog-Upload-Chunk-Granularity": str(GRANULARITY),
                "X-GUploader-UploadID": uid})
            return
        # An upload session: the upload id is the credential; a key, when sent,
        # must belong to the project that started the session.
        with st.lock:
            sess = st.uploads.get(upload_id)
        if sess is None:
            self.log_entry(st, 404, error_status="NOT_FOUND")
            self.send_body(404, b"", ctype="text/plain; charset=utf-8",
                           headers={"X-Goog-Upload-Status": "final"})
            return
        key, source = self.credentials()
        self.entry.update({"key": key, "key_source": source, "project": sess["project"]})
        if key is not None:
            with st.lock:
                info = st.key_info(key)
            if info is None or info["project"] != sess["project"]:
                self.entry["project"] = info["project"] if info else None
                raise Reply(403, error_obj(403, "PERMISSION_DENIED",
                                           "The caller does not have permission"))
        hdrs = {"X-GUploader-UploadID": upload_id}
        if cmd == "query":
            self.log_entry(st, 200)
            hdrs.update({"X-Goog-Upload-Status": "final" if sess["done"] else "active",
                         "X-Goog-Upload-Size-Received": str(len(sess["data"]))})
            self.send_body(200, b"", ctype="text/plain; charset=utf-8", headers=hdrs)
            return
        if cmd == "cancel":
            with st.lock:
                st.uploads.pop(upload_id, None)
            self.log_entry(st, 200)
            self.send_body(200, b"", ctype="text/plain; charset=utf-8",
                           headers={"X-Goog-Upload-Status": "cancelled"})
            return
        steps = set(cmd.split(","))
        if not steps or not steps <= {"upload", "finalize"}:
            raise Reply(400, status_error(400, "Invalid X-Goog-Upload-Command."))
        if sess["done"]:
            raise Reply(400, status_error(400, "Upload already finalized."))
        if "upload" in steps:
            try:
                off = int(self.headers.get("X-Goog-Upload-Offset") or "-1")
            except ValueError:
                off = -1
            with st.lock:
                if off != len(sess["data"]):
                    got = len(sess["data"])
                    bad = True
                else:
                    sess["data"] += self.body_bytes or b""
                    bad = False
            if bad:
                self.log_entry(st, 400, error_status="INVALID_ARGUMENT")
                self.send_body(400, b"", ctype="text/plain; charset=utf-8", headers={
                    "X-Goog-Upload-Status": "active", "X-Goog-Upload-Size-Received": str(got)})
                return
        if "finalize" not in steps:
            self.log_entry(st, 200)
            hdrs["X-Goog-Upload-Status"] = "active"
            self.send_body(200, b"", ctype="text/plain; charset=utf-8", headers=hdrs)
            return
        if sess.get("store"):
            with st.lock:
                sess["done"] = True
                store = st.stores.get(sess["store"])
                if store is None:
                    raise Reply(404, error_obj(404, "NOT_FOUND", "Requested entity was not found."))
                out = self.store_op(st, store, self.store_doc(
                    st, store, sess["meta"].get("displayName", "")), upload=True)
            self.log_entry(st, 200)
            hdrs["X-Goog-Upload-Status"] = "final"
            self.send_obj(200, out, headers=hdrs)
            return
        now = time.time()
        fid = "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(12))
        data = bytes(sess["data"])
        res = {"name": "files/" + fid}
        if sess["meta"].get("displayName") or sess["meta"].get("display_name"):
            res["displayName"] = sess["meta"].get("displayName") or sess["meta"].get("display_name")
        res.update({
            "mimeType": sess["mime"], "sizeBytes": str(len(data)),
            "createTime": rfc3339(now), "updateTime": rfc3339(now),
            "expirationTime": rfc3339(now + 48 * 3600),
            "sha256Hash": base64.b64encode(hashlib.sha256(data).hexdigest().encode()).decode(),
            "uri": "%s/v1beta/files/%s" % (self.base_url(), fid),
            "state": "ACTIVE", "source": "UPLOADED"})
        with st.lock:
            sess["done"] = True
            st.files[fid] = dict(res, _project=sess["project"])
        self.entry["file"] = fid
        self.log_entry(st, 200)
        hdrs["X-Goog-Upload-Status"] = "final"
        self.send_obj(200, {"file": res}, headers=hdrs)

    @staticmethod
    def public(res):
        return {k: v for k, v in res.items() if not k.startswith("_")}

    def list_files(self, st):
        info = self.authenticate(st)
        with st.lock:
            mine = [self.public(f) for f in st.files.values() if f["_project"] == info["project"]]
        self.log_entry(st, 200)
        self.send_obj(200, {"files": mine} if mine else {})

    def file_op(self, st, fid):
        info = self.authenticate(st)
        self.entry["file"] = fid
        with st.lock:
            f = st.files.get(fid)
            if f is None or f["_project"] != info["project"]:
                raise self.file_denied(fid)
            if self.command == "DELETE":
                del st.files[fid]
                out = {}
            else:
                out = self.public(f)
        self.log_entry(st, 200)
        self.send_obj(200, out)

    # -- cachedContents -----------------------------------------------------
    def ttl_seconds(self, body, default=3600.0):
        ttl = body.get("ttl")
        if isinstance(ttl, str) and ttl.endswith("s"):
            try:
                return float(ttl[:-1])
            except ValueError:
                pass
        return default

    def caches_collection(self, st):
        info = self.authenticate(st)
        if self.command == "GET":
            with st.lock:
                mine = [self.public(c) for c in st.caches.values() if c["_project"] == info["project"]]
            self.log_entry(st, 200)
            self.send_obj(200, {"cachedContents": mine} if mine else {})
            return
        body = self.json_body()
        model = str(body.get("model") or "")
        if not model:
            raise Reply(400, error_obj(400, "INVALID_ARGUMENT",
                                       "* CreateCachedContentRequest.cached_content.model: model is required\n"))
        if not model.startswith("models/"):
            model = "models/" + model
        self.entry["model"] = model[len("models/"):]
        self.check_refs(st, info, body)
        n = tokens_of(len(gemini_text(body).encode()))
        now = time.time()
        cid = rand_id(16, string.ascii_lowercase + string.digits)
        res = {"name": "cachedContents/" + cid, "model": model,
               "createTime": rfc3339(now), "updateTime": rfc3339(now),
               "expireTime": rfc3339(now + self.ttl_seconds(body))}
        if body.get("displayName"):
            res["displayName"] = body["displayName"]
        res["usageMetadata"] = {"totalTokenCount": n}
        with st.lock:
            st.caches[cid] = dict(res, _project=info["project"], _tokens=n)
        self.entry["cache"] = cid
        self.log_entry(st, 200, prompt=n, total=n)
        self.send_obj(200, res)

    def cache_op(self, st, cid):
        info = self.authenticate(st)
        self.entry["cache"] = cid
        body = self.json_body() if self.command == "PATCH" else {}
        with st.lock:
            c = st.caches.get(cid)
            if c is None or c["_project"] != info["project"]:
                raise self.cache_denied(cid)
            if self.command == "DELETE":
                del st.caches[cid]
                out = {}
            else:
                if self.command == "PATCH":
                    now = time.time()
                    if body.get("expireTime"):
                        c["expireTime"] = body["expireTime"]
                    else:
                        c["expireTime"] = rfc3339(now + self.ttl_seconds(body))
                    c["updateTime"] = rfc3339(now)
                out = self.public(c)
        self.log_entry(st, 200)
        self.send_obj(200, out)

    # -- OpenAI-compatible --------------------------------------------------
    def route_openai(self, st, rest):
        self.openai = True
        cmd = self.command
        if rest == "chat/completions" and cmd == "POST":
            self.oa_chat(st)
        elif rest == "embeddings" and cmd == "POST":
            self.oa_embeddings(st)
        elif rest == "models" and cmd == "GET":
            info = self.authenticate(st)
            del info
            self.log_entry(st, 200)
            self.send_body(200, pretty({"object": "list", "data": [
                {"id": "models/" + m, "object": "model", "owned_by": "google"}
                for m in self.model_list(st)]}) + "\n")
        elif rest.startswith("models/") and cmd == "GET":
            self.authenticate(st)
            m = rest[len("models/"):]
            if m.startswith("models/"):
                m = m[len("models/"):]
            self.log_entry(st, 200)
            self.send_body(200, pretty({"id": "models/" + m, "object": "model",
                                        "owned_by": "google"}) + "\n")
        else:
            self.not_found()

    @staticmethod
    def oa_model(body):
        m = str(body.get("model") or "")
        return m[len("models/"):] if m.startswith("models/") else m

    def oa_chat(self, st):
        info = self.authenticate(st)
        body = self.json_body()
        model = self.oa_model(body)
        self.entry["model"] = model or None
        self.entry["kind"] = "openai_chat"
        if not model:
            raise Reply(400, status_error(400, "model is not specified"))
        self.check_model(st, model)
        if not body.get("messages"):
            raise Reply(400, status_error(400, "* GenerateContentRequest.contents: contents is not specified\n"))
        stream = bool(body.get("stream"))
        self.entry["stream"] = stream
        text = openai_text(body)
        text_bytes = text.encode()
        prompt = tokens_of(len(text_bytes))
        self.entry["request_tokens"] = prompt
        self.answer_generation(st, info, model, text_bytes, prompt, 0, parse_magic(text),
                               mode="oa_sse" if stream else "oa")

    def oa_chunk(self, rid, model, text, last, prompt, cand, thoughts, cached, streaming, first):
        usage = {"completion_tokens": cand, "prompt_tokens": prompt,
                 "total_tokens": prompt + cand + thoughts}
        if thoughts:
            usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        if streaming:
            choice = {"delta": {"content": text, "role": "assistant"}}
            if last:
                choice["finish_reason"] = "stop"
            choice["index"] = 0
            return {"choices": [choice], "created": int(time.time()), "id": rid,
                    "model": model, "object": "chat.completion.chunk", "usage": usage}
        return {"choices": [{"finish_reason": "stop", "index": 0,
                             "message": {"content": text, "role": "assistant"}}],
                "created": int(time.time()), "id": rid, "model": model,
                "object": "chat.completion", "usage": usage}

    def oa_embeddings(self, st):
        self.authenticate(st)
        body = self.json_body()
        model = self.oa_model(body)
        self.entry["model"] = model or None
        self.entry["kind"] = "openai_embed"
        inp = body.get("input")
        texts = [inp] if isinstance(inp, str) else [str(x) for x in (inp or [])]
        if not texts:
            raise Reply(400, status_error(400, "input is not specified"))
        dims = int(st.config.get("embedding_dims", 16))
        n = sum(tokens_of(len(t.encode())) for t in texts)
        self.log_entry(st, 200, prompt=n, total=n)
        self.send_body(200, pretty({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": embedding_values(t, dims)}
                     for i, t in enumerate(texts)],
            "model": model,
            "usage": {"prompt_tokens": n, "total_tokens": n}}) + "\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, socket.timeout, BrokenPipeError, OSError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Stand-in Gemini API server (tests only).")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--config")
    ap.add_argument("--log", help="append every served request to this JSON-lines file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    config = {}
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
    state = State(config, args.log)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])

    Server.address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    server = Server((args.host, args.port), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.state = state
    server.verbose = args.verbose

    def on_signal(signum, frame):
        STOP.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sys.stdout.write("READY %d\n" % server.server_address[1])
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if state.logfile:
            state.logfile.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
