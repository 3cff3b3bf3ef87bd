-- wrk script for make bench: a generateContent POST as an SDK sends it, and
-- one JSON line with the figures at the end (latencies in microseconds).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-goog-api-key"] = "client-key-replaced-by-the-proxy"
wrk.headers["User-Agent"] = "google-genai-sdk/1.20.0 gl-python/3.11.2"
wrk.body = '{"contents":[{"role":"user","parts":[{"text":"Explain in one ' ..
    'paragraph what a reverse proxy in front of an API does."}]}],' ..
    '"generationConfig":{"temperature":0.7,"maxOutputTokens":256}}'

done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
	    "BENCH {\"requests\":%d,\"duration_us\":%d,\"errors\":%d," ..
	    "\"non2xx\":%d,\"p50\":%d,\"p90\":%d,\"p99\":%d,\"mean\":%.1f," ..
	    "\"max\":%d}\n",
	    summary.requests, summary.duration,
	    e.connect + e.read + e.write + e.timeout, e.status,
	    latency:percentile(50), latency:percentile(90),
	    latency:percentile(99), latency.mean, latency.max))
end
