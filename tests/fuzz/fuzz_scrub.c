/*
 * Fuzz target: scrub_text() of src/scrub.c, which masks secrets out of
 * everything that leaves the proxy.
 *
 * The first byte picks where in the text a pool key is planted and how it
 * is written (as it is, JSON-\u-escaped at one of its characters, or
 * percent-encoded there); the rest is the text around it.  Whatever the
 * text: the result is never longer; neither the key nor any secret of the
 * set stands in it, read as it is or decoded; scrubbing it again changes
 * nothing; and text without a secret or a Google-shaped key in it comes
 * back byte for byte.  (This target found that a mask's last 4 characters
 * can begin a secret that overlapped it: scrub_text() now goes round
 * until nothing is found.)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"
#include "scrub.h"

static const char *const pool[] = {
	"AIzaSyFuzzPoolKeyNumberOne00000000k001",
	"AQ.Ab8RN6FuzzPoolKeyTwo0000000000000k002",
	"tok-fuzz-access-token",
	"shorttk",
};
#define NPOOL	(sizeof(pool) / sizeof(pool[0]))

/* The value of the hex digit at p, or -1. */
static int
hex(const char *p)
{
	return http_hexval((unsigned char)*p);
}

/* b[0..n) read as scrub.c decodes it, into out; returns its length. */
static size_t
decode(const char *b, size_t n, char *out)
{
	size_t	 i = 0, o = 0;
	int	 v, k, h;

	while (i < n) {
		if (b[i] == '%' && i + 2 < n && hex(b + i + 1) >= 0 &&
		    hex(b + i + 2) >= 0) {
			out[o++] = (char)(hex(b + i + 1) << 4 | hex(b + i + 2));
			i += 3;
			continue;
		}
		if (b[i] == '\\' && i + 5 < n && b[i + 1] == 'u') {
			for (v = 0, k = 0; k < 4; k++) {
				if ((h = hex(b + i + 2 + k)) < 0)
					break;
				v = v << 4 | h;
			}
			if (k == 4) {
				out[o++] = v < 0x80 ? (char)v : '?';
				i += 6;
				continue;
			}
		}
		if (b[i] == '\\' && i + 1 < n) {
			switch (b[i + 1]) {
			case 'n':
				out[o++] = '\n';
				break;
			case 'r':
				out[o++] = '\r';
				break;
			case 't':
				out[o++] = '\t';
				break;
			case 'b':
				out[o++] = '\b';
				break;
			case 'f':
				out[o++] = '\f';
				break;
			default:
				out[o++] = b[i + 1];
			}
			i += 2;
			continue;
		}
		out[o++] = b[i++];
	}
	out[o] = '\0';
	return o;
}

static void
no_secret(const char *t, const char *what)
{
	size_t	 i;

	for (i = 0; i < NPOOL; i++)
		FUZZ_CHECK(strstr(t, pool[i]) == NULL, "%s holds secret %zu",
		    what, i);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct scrub	*s;
	const char		*key;
	char			*text, *dec, *again;
	size_t			 n, at, klen, len, len2, off;
	int			 how;

	if (s == NULL && (s = scrub_new(pool, NPOOL)) == NULL)
		abort();
	if (size < 1)
		return 0;
	how = data[0];
	data++;
	size--;
	key = pool[how % NPOOL];
	klen = strlen(key);
	at = size > 0 ? (size_t)(how / NPOOL) % (size + 1) : 0;

	/* The text: data with the key planted at `at`, written as how
	 * says: plain, one character \u-escaped, or one %-encoded. */
	if ((text = malloc(size + klen * 6 + 1)) == NULL ||
	    (dec = malloc(size + klen * 6 + 1)) == NULL ||
	    (again = malloc(size + klen * 6 + 1)) == NULL)
		abort();
	memcpy(text, data, at);
	n = at;
	off = (size_t)(how >> 4) % klen;
	memcpy(text + n, key, off);
	n += off;
	switch ((how >> 2) % 3) {
	case 0:
		text[n++] = key[off];
		break;
	case 1:
		n += (size_t)sprintf(text + n, "\\u%04x", key[off]);
		break;
	default:
		n += (size_t)sprintf(text + n, "%%%02X", key[off]);
		break;
	}
	memcpy(text + n, key + off + 1, klen - off - 1);
	n += klen - off - 1;
	memcpy(text + n, data + at, size - at);
	n += size - at;

	len = scrub_text(s, text, n);
	FUZZ_CHECK(len <= n, "grew from %zu to %zu", n, len);
	text[len] = '\0';
	/* (a NUL in the text ends what strstr sees: check each part) */
	for (off = 0; off < len; off += strlen(text + off) + 1)
		no_secret(text + off, "the text");
	len2 = decode(text, len, dec);
	for (off = 0; off < len2; off += strlen(dec + off) + 1)
		no_secret(dec + off, "the decoded text");

	memcpy(again, text, len);
	len2 = scrub_text(s, again, len);
	FUZZ_CHECK(len2 == len && memcmp(again, text, len) == 0,
	    "scrubbing twice changed it (%zu -> %zu)", len, len2);

	/* The data alone, with nothing planted: byte for byte, unless it
	 * holds a secret or a Google-shaped key of its own. */
	memcpy(again, data, size);
	len2 = scrub_text(s, again, size);
	if (len2 != size || memcmp(again, data, size) != 0) {
		FUZZ_CHECK(memmem(data, size, "AIza", 4) != NULL ||
		    memmem(data, size, "AQ.", 3) != NULL ||
		    memmem(data, size, "tok", 3) != NULL ||
		    memmem(data, size, "short", 5) != NULL ||
		    memchr(data, '\\', size) != NULL ||
		    memchr(data, '%', size) != NULL,
		    "changed a text without a key");
	}
	free(text);
	free(dec);
	free(again);
	return 0;
}
