"""Issue 12 sections 4 and 6: every resource stays with its key, and batch
jobs are metered as what they are.

Against the stand-in (tests/standin), which keeps batches, long-running
operations and file search stores per project and answers another
project's key 403.  The pool is K1, K2 (priority) and K3, each its own
project.  A resource is made on the sticky key (K1); then the sticky key
is moved off it by a quota 429 (K1 cools for the model), so that a
request that was not routed by ownership would go to K2 and get a 403.
"""
import json
import os
import signal

from lib import wait_for
from standin import FLASH, PRO, K1, K2, StandIn, proxy_daemon, mask
from test_proxy import (JSON, cell, err_of, finish, gen, key_entry, kid,
                        status_data, upload_file)

VEO = "veo-3.0-generate-preview"


def start(**kw):
    si = StandIn()
    d = proxy_daemon(si, **kw)
    d.start()
    return si, d


def post(d, path, obj):
    return d.request("POST", path, json.dumps(obj).encode(), JSON)


def keys_of(si, since):
    return [(e["key"], e["status"]) for e in si.log(since)]


def cool_k1(si, d, model=FLASH):
    """K1 cools for model (a quota 429), the model's sticky key is K2."""
    si.config({"projects": {"p1": {"quotas": {model: {"rpm": 1}}}}})
    gen(d, model, "fills K1's minute")
    st, _, raw = gen(d, model, "moves on STANDIN:retry_ms=60000")
    si.config({"projects": {"p1": None}})
    assert st == 200, (st, raw[:200])
    sd = status_data(d)
    assert cell(sd, K1, model)["state"] == "cooling"
    assert sd["current_keys"][model] == kid(sd, K2)


def make_batch(si, d, model=FLASH, n=2):
    since = si.last_seq()
    reqs = [{"request": {"contents": [{"parts": [{"text": "q%d" % i}]}]}}
            for i in range(n)]
    st, _, raw = post(d, "/v1beta/models/%s:batchGenerateContent" % model,
                      {"batch": {"displayName": "it",
                                 "inputConfig": {"requests": {
                                     "requests": reqs}}}})
    assert st == 200, (st, raw[:300])
    op = json.loads(raw)
    assert op["name"].startswith("batches/")
    assert op["metadata"]["state"] == "BATCH_STATE_PENDING"
    return op["name"], si.log(since)[0]["key"]


def poll_done(si, d, path, owner):
    """GET path until the answer says done; every GET went to owner."""
    since = si.last_seq()
    for _ in range(6):
        st, _, raw = d.request("GET", path)
        assert st == 200, (st, raw[:300])
        if json.loads(raw).get("done"):
            break
    assert json.loads(raw).get("done"), raw[:300]
    assert set(keys_of(si, since)) == {(owner, 200)}, \
        [(mask(k), s) for k, s in keys_of(si, since)]
    return json.loads(raw)


def test_batch_read_back_through_owner_after_cooling():
    si, d = start()
    name, creator = make_batch(si, d)
    assert creator == K1
    cool_k1(si, d)
    out = poll_done(si, d, "/v1beta/" + name, K1)
    assert out["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert out["response"]["inlinedResponses"]
    # Cancel and list go to the owner too; a DELETE forgets the batch:
    # after it, a GET goes to the sticky key (and gets the 403).
    since = si.last_seq()
    assert post(d, "/v1beta/%s:cancel" % name, {})[0] == 200
    assert d.request("DELETE", "/v1beta/" + name)[0] == 200
    assert keys_of(si, since) == [(K1, 200), (K1, 200)]
    since = si.last_seq()
    assert d.request("GET", "/v1beta/" + name)[0] == 403
    assert keys_of(si, since) == [(K2, 403)]
    finish(d)


def test_batch_jobs_not_counted_against_rpm_tpm():
    models = {FLASH: {"tpm_limit": 5, "tpd_limit": None, "rpm_limit": 1,
                      "rpd_limit": 1}}
    si, d = start(models=models)
    # rpm 1, rpd 1, tpm 5: three batches of big requests all go out.
    for _ in range(3):
        name, creator = make_batch(si, d, n=40)
        assert creator == K1
    sd = status_data(d)
    c = cell(sd, K1, FLASH)
    assert c["batch_jobs"] == 3, c
    assert (c["requests_today"], c["rpm_used"], c["rpd_used"],
            c["tpm_used"], c["tpd_used"]) == (0, 0, 0, 0, 0), c
    assert key_entry(sd, K1)["batch_jobs"] == 3
    assert key_entry(sd, K2)["batch_jobs"] == 0
    st, _, raw = d.request("GET", "/metrics")
    assert st == 200
    line = [x for x in raw.decode().splitlines()
            if x.startswith("gemini_looper_batch_jobs_total{")]
    assert len(line) == 1 and line[0].endswith(" 3"), line
    assert kid(sd, K1) in line[0]
    # An interactive request still meets its limits as before.
    assert gen(d, FLASH, "hi")[0] == 200
    # (a worker settles just after the answer is out: wait for it)
    wait_for(lambda: cell(status_data(d), K1, FLASH)["requests_today"] == 1,
             2, "the request to be counted")
    finish(d)


def test_operation_polled_through_owner_and_its_video():
    si, d = start()
    since = si.last_seq()
    st, _, raw = post(d, "/v1beta/models/%s:predictLongRunning" % VEO,
                      {"instances": [{"prompt": "a cat"}]})
    assert st == 200, (st, raw[:300])
    name = json.loads(raw)["name"]
    assert name.startswith("models/%s/operations/" % VEO)
    assert keys_of(si, since) == [(K1, 200)]
    cool_k1(si, d)
    out = poll_done(si, d, "/v1beta/" + name, K1)
    uri = out["response"]["generateVideoResponse"]["generatedSamples"][0][
        "video"]["uri"]
    fid = uri.split("/files/")[1].split(":")[0]
    # The video is a file of the operation's project.
    since = si.last_seq()
    assert d.request("GET", "/v1beta/files/" + fid)[0] == 200
    assert keys_of(si, since) == [(K1, 200)]
    finish(d)


def test_file_search_store_documents_and_body_names():
    si, d = start()
    st, _, raw = post(d, "/v1beta/fileSearchStores", {"displayName": "Docs"})
    assert st == 200, raw[:300]
    store = json.loads(raw)["name"]
    _, _, f = upload_file(d, b"some text\n" * 20)
    cool_k1(si, d)
    since = si.last_seq()
    # importFile names the store (path) and the file (body).
    st, _, raw = post(d, "/v1beta/%s:importFile" % store,
                      {"fileName": f["name"]})
    assert st == 200, raw[:300]
    doc = json.loads(raw)["response"]["documentName"]
    assert doc.startswith(store + "/documents/")
    # An upload into the store, through the proxy's upload URL.
    h = {"X-Goog-Upload-Protocol": "resumable",
         "X-Goog-Upload-Command": "start", "Content-Type": "application/json"}
    st, rh, raw = d.request("POST", "/upload/v1beta/%s:uploadToFileSearchStore"
                            % store, b'{"displayName": "up"}', h)
    assert st == 200, raw[:300]
    url = [v for k, v in rh.items() if k.lower() == "x-goog-upload-url"][0]
    path = url.split("://", 1)[1].split("/", 1)[1]
    st, _, raw = d.request("POST", "/" + path, b"data", {
        "X-Goog-Upload-Command": "upload, finalize",
        "X-Goog-Upload-Offset": "0"})
    assert st == 200, raw[:300]
    op = json.loads(raw)["name"]
    assert op.startswith(store + "/upload/operations/")
    for p in (op, doc, store + "/documents"):
        assert d.request("GET", "/v1beta/" + p)[0] == 200
    # A generate request whose fileSearch tool names the store (PRO:
    # K1 is not cooling there, and PRO's sticky key is made K2 first).
    si.config({"projects": {"p1": {"quotas": {PRO: {"rpm": 1}}}}})
    assert gen(d, PRO, "fills K1")[0] == 200
    assert gen(d, PRO, "to K2 STANDIN:retry_ms=500")[0] == 200
    si.config({"projects": {"p1": None}})
    wait_for(lambda: cell(status_data(d), K1, PRO)["state"] == "available",
             5, "K1 to cool down on PRO")
    tool = {"contents": [{"parts": [{"text": "find it"}]}],
            "tools": [{"fileSearch": {"fileSearchStoreNames": [store]}}]}
    assert post(d, "/v1beta/models/%s:generateContent" % PRO, tool)[0] == 200
    assert d.request("DELETE", "/v1beta/" + doc)[0] == 200
    log = si.log(since)
    mine = [(e["key"], e["status"]) for e in log
            if "fileSearchStores" in e["path"]]
    assert mine == [(K1, 200)] * 7, mine
    # The last PRO request is the one with the tool: its store's key.
    pro = [e for e in log if e.get("model") == PRO]
    assert (pro[-1]["key"], pro[-1]["status"]) == (K1, 200)
    assert status_data(d)["current_keys"][PRO] == kid(status_data(d), K2)
    finish(d)


def test_two_projects_named_400_without_upstream_call():
    si, d = start()
    _, _, f = upload_file(d, b"K1's file\n")              # on K1
    cool_k1(si, d)
    st, _, raw = post(d, "/v1beta/fileSearchStores", {"displayName": "x"})
    store = json.loads(raw)["name"]                        # on K2
    since = si.last_seq()
    body = {"contents": [{"parts": [{"text": "both"}, {"fileData": {
        "mimeType": "text/plain", "fileUri": f["uri"]}}]}],
        "tools": [{"fileSearch": {"fileSearchStoreNames": [store]}}]}
    st, _, raw = post(d, "/v1beta/models/%s:generateContent" % PRO, body)
    assert st == 400, (st, raw[:300])
    e = err_of(raw)
    assert e["status"] == "INVALID_ARGUMENT"
    assert "two different projects" in e["message"]
    assert f["name"] in e["message"] and store in e["message"]
    assert si.log(since) == []
    finish(d)


def test_owner_invalid_clear_error():
    si, d = start()
    name, creator = make_batch(si, d)
    assert creator == K1
    si.config({"keys": {K1: {"project": "p1", "state": "invalid"}}})
    assert gen(d, FLASH, "K1 is found invalid")[0] == 200
    assert key_entry(status_data(d), K1)["state"] == "invalid"
    since = si.last_seq()
    st, _, raw = d.request("GET", "/v1beta/" + name)
    assert st == 503, (st, raw[:300])
    e = err_of(raw)
    assert e["status"] == "UNAVAILABLE"
    assert name in e["message"] and "invalid" in e["message"]
    assert kid(status_data(d), K1) in e["message"]
    assert si.log(since) == []
    finish(d)


def test_ownership_survives_reload_and_restart():
    si, d = start()
    name, creator = make_batch(si, d)
    assert creator == K1
    cool_k1(si, d)
    d.signal(signal.SIGHUP)
    d.wait_log("reloaded: generation 2")
    since = si.last_seq()
    assert d.request("GET", "/v1beta/" + name)[0] == 200
    assert keys_of(si, since) == [(K1, 200)]
    d.stop()
    with open(os.path.join(d.dir, "key_usage.json")) as fp:
        aff = {a["name"]: a for a in json.load(fp)["affinity"]}
    assert aff[name]["kind"] == "batch" and aff[name]["expires"] > 0
    d.start()
    # The cooling was kept too, so the sticky key is not K1.
    assert cell(status_data(d), K1, FLASH)["state"] == "cooling"
    out = poll_done(si, d, "/v1beta/" + name, K1)
    assert out["done"]
    d.stop()
    with open(os.path.join(d.dir, "key_usage.json")) as fp:
        a = {a["name"]: a for a in json.load(fp)["affinity"]}[name]
    # Done: kept for the margin (48 h) from when it was seen done.
    import time
    now = time.time() * 1000
    assert a.get("done") is True
    assert now + 47 * 3600e3 < a["expires"] < now + 49 * 3600e3, a
    finish(d)


def test_expired_resource_is_forgotten_at_restart():
    si, d = start()
    name, _ = make_batch(si, d)
    d.stop()
    path = os.path.join(d.dir, "key_usage.json")
    with open(path) as fp:
        data = json.load(fp)
    for a in data["affinity"]:
        if a["name"] == name:
            a["expires"] = 1000       # long past
    with open(path, "w") as fp:
        json.dump(data, fp)
    d.start()
    cool_k1(si, d)
    since = si.last_seq()
    assert d.request("GET", "/v1beta/" + name)[0] == 403
    assert keys_of(si, since) == [(K2, 403)]
    finish(d)
