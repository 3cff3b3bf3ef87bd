/*
 * Fuzz target: the streaming usage scanner of src/usagescan.c.
 *
 * The first byte picks the mode (JSON, SSE, OpenAI) and the second where
 * the answer is cut; the rest is an upstream answer body.  Fed whole, in
 * two pieces at that cut, and (when short) byte by byte, the scanner must
 * come to the same usage and error: the proxy sees an answer in whatever
 * pieces TLS hands it.  Counts are never negative, and what it reports of
 * an error stays within its fields.
 */
#include <stdint.h>
#include <string.h>

#include "usagescan.h"
#include "fuzz.h"

#define BYTEWISE_MAX	4096	/* longer answers: whole and split only */

static void
scan_eq(const struct gem_scan *a, const struct gem_scan *b, const char *how)
{
	FUZZ_CHECK(memcmp(&a->usage, &b->usage, sizeof(a->usage)) == 0,
	    "%s: usage differs (prompt %lld/%lld total %lld/%lld seen %d/%d)",
	    how, (long long)a->usage.prompt, (long long)b->usage.prompt,
	    (long long)a->usage.total, (long long)b->usage.total,
	    a->usage.seen, b->usage.seen);
	FUZZ_CHECK(a->error_seen == b->error_seen &&
	    a->error_code == b->error_code &&
	    strcmp(a->error_status, b->error_status) == 0,
	    "%s: error differs (%d %d %s / %d %d %s)", how, a->error_seen,
	    a->error_code, a->error_status, b->error_seen, b->error_code,
	    b->error_status);
	FUZZ_CHECK(a->bytes == b->bytes, "%s: bytes", how);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static struct gem_scan	 whole, split, bytewise;
	static const int	 modes[] = { GEM_SCAN_JSON, GEM_SCAN_SSE,
				    GEM_SCAN_OPENAI };
	const char		*p;
	size_t			 n, cut, i;
	int			 mode;

	if (len < 2)
		return 0;
	mode = modes[data[0] % 3];
	p = (const char *)data + 2;
	n = len - 2;
	cut = n > 0 ? (size_t)data[1] * n / 255 : 0;

	gem_scan_init(&whole, mode);
	gem_scan_feed(&whole, p, n);
	FUZZ_CHECK(whole.bytes == n, "bytes %llu of %zu",
	    (unsigned long long)whole.bytes, n);
	FUZZ_CHECK(whole.usage.prompt >= 0 && whole.usage.candidates >= 0 &&
	    whole.usage.cached >= 0 && whole.usage.thoughts >= 0 &&
	    whole.usage.tool_use >= 0 && whole.usage.total >= 0,
	    "a negative count");
	FUZZ_CHECK(whole.usage.seen == 0 || whole.usage.seen == 1, "seen %d",
	    whole.usage.seen);
	FUZZ_CHECK(memchr(whole.error_status, '\0',
	    sizeof(whole.error_status)) != NULL, "error_status unterminated");
	FUZZ_CHECK(whole.error_code >= 0 && whole.error_code < 1000,
	    "error_code %d", whole.error_code);

	gem_scan_init(&split, mode);
	gem_scan_feed(&split, p, cut);
	gem_scan_feed(&split, p + cut, n - cut);
	scan_eq(&whole, &split, "split");

	if (n <= BYTEWISE_MAX) {
		gem_scan_init(&bytewise, mode);
		for (i = 0; i < n; i++)
			gem_scan_feed(&bytewise, p + i, 1);
		scan_eq(&whole, &bytewise, "byte by byte");
	}
	return 0;
}
