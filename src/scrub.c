/*
 * Secrets out of every byte that leaves: the pool's keys and the access
 * and admin tokens, wherever they stand in a text (glued to other
 * characters, inside a URL, JSON-escaped as \u0041..., percent-encoded as
 * %41...), and anything shaped like a Google API key ("AIza" and 35 of
 * [A-Za-z0-9_-], not followed by another of those) even when it is in no
 * pool.  Each is replaced in place by its masked form: its first 4
 * characters, "…", its last 4 (a secret shorter than 12 becomes "…"
 * alone, one shorter than 4 is not looked for).  A masked form is never
 * longer than what it replaces, so a text only shrinks.
 *
 * How: the text is read as characters, twice when it holds a backslash or
 * a percent sign (once as it is, once decoded: JSON's \uXXXX and \x
 * escapes, and %XX).  Bytes that no secret starts with are skipped at
 * once; at the others a bitmap of the secrets' first two characters
 * (8 KiB, it stays in the cache) rules out almost every position; where
 * it does not, the next P characters (P: the shortest
 * secret's length, at most 16) are hashed and looked up in an open-
 * addressed table, and a hit is compared in full.  The longest secret that
 * matches wins.
 *
 * A set is built once per config by cfg_load() and inherited read-only by
 * the workers; it points at the config's strings, which outlive it.  The
 * proxy scrubs every header of an answer and every error body it relays,
 * the dashboard what test_key quotes, the classifier the text it logs.
 * No I/O, no locks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "scrub.h"

#define SCRUB_MIN	4	/* shorter secrets are not looked for */
#define SCRUB_SHORT	12	/* shorter ones mask to the ellipsis alone */
#define SCRUB_PMAX	16	/* characters hashed */
#define SCRUB_GKEY	39	/* "AIza" + 35 */
#define SCRUB_ELLIPSIS	"\xe2\x80\xa6"	/* U+2026 in UTF-8 */
#define SCRUB_NOTASCII	0x80	/* what a \u escape above 0x7f decodes to */
#define SCRUB_NFIND	8	/* start bytes looked for with memchr() */

struct scrub {
	const char	**sec;		/* the secrets: the caller's strings */
	uint32_t	 *len;
	size_t		  n;
	size_t		  p;		/* characters hashed per position */
	size_t		  mask;		/* table slots - 1 */
	uint64_t	 *th;		/* a slot's hash of a secret's first p */
	uint32_t	 *ti;		/* its secret's index + 1; 0: empty */
	uint8_t		  start[256];	/* bytes a secret (or "AIza") starts with */
	unsigned char	  find[SCRUB_NFIND];	/* the same, when that few */
	int		  nfind;	/* how many; 0: too many, use start[] */
	uint8_t		  first2[65536 / 8];	/* bigrams secrets start with */
};

/* Without a set: Google keys alone. */
static const uint8_t scrub_start_none[256] = { ['A'] = 1 };

/* [A-Za-z0-9_-]: what follows "AIza" in a Google API key. */
static int
scrub_gch(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/*
 * The character at b[i] (i < len) into *c; returns how many bytes it
 * takes.  Decoded: JSON's \uXXXX (one character; above 0x7f it is no
 * character a secret holds) and two-byte escapes, and URL %XX.
 */
static size_t
scrub_char(const char *b, size_t len, size_t i, int decode, unsigned char *c)
{
	int	 h[4], k, v;

	*c = (unsigned char)b[i];
	if (!decode)
		return 1;
	if (b[i] == '%' && i + 2 < len &&
	    (h[0] = http_hexval((unsigned char)b[i + 1])) >= 0 &&
	    (h[1] = http_hexval((unsigned char)b[i + 2])) >= 0) {
		*c = (unsigned char)(h[0] << 4 | h[1]);
		return 3;
	}
	if (b[i] != '\\' || i + 1 >= len)
		return 1;
	if (b[i + 1] == 'u' && i + 5 < len) {
		for (v = 0, k = 0; k < 4; k++) {
			h[k] = http_hexval((unsigned char)b[i + 2 + k]);
			if (h[k] < 0)
				break;
			v = v << 4 | h[k];
		}
		if (k == 4) {
			*c = v < 0x80 ? (unsigned char)v : SCRUB_NOTASCII;
			return 6;
		}
	}
	switch (b[i + 1]) {
	case 'n':
		*c = '\n';
		break;
	case 'r':
		*c = '\r';
		break;
	case 't':
		*c = '\t';
		break;
	case 'b':
		*c = '\b';
		break;
	case 'f':
		*c = '\f';
		break;
	default:
		*c = (unsigned char)b[i + 1];
	}
	return 2;
}

static uint64_t
scrub_fnv(uint64_t h, unsigned char c)
{
	return (h ^ c) * 1099511628211ULL;
}

#define SCRUB_FNV0	14695981039346656037ULL

static int
scrub_bigram(const struct scrub *s, unsigned char a, unsigned char b)
{
	unsigned int	 i = (unsigned int)a << 8 | b;

	return s->first2[i >> 3] & (1 << (i & 7));
}

void
scrub_free(struct scrub *s)
{
	if (s == NULL)
		return;
	free(s->sec);
	free(s->len);
	free(s->th);
	free(s->ti);
	free(s);
}

/* Table slots for n secrets: a power of two, at most half full. */
static size_t
scrub_slots(size_t n)
{
	size_t	 slots;

	for (slots = 16; slots < 2 * n; slots *= 2)
		;
	return slots;
}

/*
 * Fills s (zeroed, its arrays as large as n and scrub_slots(n) need) with
 * the secrets among secrets[0..n): NULL entries, and strings shorter than
 * SCRUB_MIN, are left out.
 */
static void
scrub_fill(struct scrub *s, const char *const *secrets, size_t n)
{
	size_t		 i, k, minlen = SIZE_MAX, l;
	uint64_t	 h;

	for (i = 0; i < n; i++) {
		if (secrets[i] == NULL || (l = strlen(secrets[i])) < SCRUB_MIN ||
		    l > UINT32_MAX)
			continue;
		s->sec[s->n] = secrets[i];
		s->len[s->n++] = (uint32_t)l;
		if (l < minlen)
			minlen = l;
	}
	s->p = minlen < SCRUB_PMAX ? minlen : SCRUB_PMAX;
	s->mask = scrub_slots(s->n) - 1;
	for (i = 0; i < s->n; i++) {
		for (h = SCRUB_FNV0, k = 0; k < s->p; k++)
			h = scrub_fnv(h, (unsigned char)s->sec[i][k]);
		for (k = h & s->mask; s->ti[k] != 0; k = (k + 1) & s->mask)
			;
		s->th[k] = h;
		s->ti[k] = (uint32_t)i + 1;
		l = (unsigned char)s->sec[i][0] << 8 |
		    (unsigned char)s->sec[i][1];
		s->first2[l >> 3] |= 1 << (l & 7);
		s->start[(unsigned char)s->sec[i][0]] = 1;
	}
	s->start['A'] = 1;
	for (i = 0; i < 256; i++) {
		if (!s->start[i])
			continue;
		if (s->nfind == SCRUB_NFIND) {
			s->nfind = 0;	/* too many for memchr() */
			break;
		}
		s->find[s->nfind++] = (unsigned char)i;
	}
}

/*
 * The next byte, at i or after, that a secret (or, decoded, an escape)
 * may start with: a memchr() per such byte, each kept until passed, so
 * that text is skipped as fast as memchr() goes.
 */
struct scrub_finder {
	unsigned char	 c[SCRUB_NFIND + 2];
	size_t		 at[SCRUB_NFIND + 2];	/* its next place; len: none */
	int		 n;
};

static void
scrub_finder_init(struct scrub_finder *f, const unsigned char *find, int n,
    int decode)
{
	int	 k;

	f->n = 0;
	for (k = 0; k < n; k++)
		f->c[f->n++] = find[k];
	if (decode) {
		f->c[f->n++] = '\\';
		f->c[f->n++] = '%';
	}
	for (k = 0; k < f->n; k++)
		f->at[k] = 0;
}

static size_t
scrub_finder_next(struct scrub_finder *f, const char *b, size_t len,
    size_t i)
{
	const char	*p;
	size_t		 best = len;
	int		 k;

	for (k = 0; k < f->n; k++) {
		if (f->at[k] < i) {
			p = memchr(b + i, f->c[k], len - i);
			f->at[k] = p != NULL ? (size_t)(p - b) : len;
		}
		if (f->at[k] < best)
			best = f->at[k];
	}
	return best;
}

/*
 * A set of the strings in secrets[0..n) (see scrub_fill), which must
 * outlive it.  NULL when out of memory.
 */
struct scrub *
scrub_new(const char *const *secrets, size_t n)
{
	struct scrub	*s;
	size_t		 slots = scrub_slots(n);

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->sec = calloc(n + 1, sizeof(*s->sec));
	s->len = calloc(n + 1, sizeof(*s->len));
	s->th = calloc(slots, sizeof(*s->th));
	s->ti = calloc(slots, sizeof(*s->ti));
	if (s->sec == NULL || s->len == NULL || s->th == NULL ||
	    s->ti == NULL) {
		scrub_free(s);
		return NULL;
	}
	scrub_fill(s, secrets, n);
	return s;
}

/*
 * Does the text at b[i] read as sec[0..slen)?  Sets *end past it.
 */
static int
scrub_cmp(const char *b, size_t len, size_t i, int decode, const char *sec,
    size_t slen, size_t *end)
{
	unsigned char	 c;
	size_t		 k;

	for (k = 0; k < slen; k++) {
		if (i >= len)
			return 0;
		i += scrub_char(b, len, i, decode, &c);
		if (c != (unsigned char)sec[k])
			return 0;
	}
	*end = i;
	return 1;
}

/* What a match found: a secret's length and the characters it shows. */
struct scrub_hit {
	size_t		 len;		/* characters of the secret */
	char		 first[4];
	char		 last[4];
	size_t		 end;		/* where it ends in the text */
};

/* Is there a Google key at b[i]? */
static int
scrub_gkey(const char *b, size_t len, size_t i, int decode,
    struct scrub_hit *hit)
{
	unsigned char	 c;
	size_t		 k;

	for (k = 0; k < SCRUB_GKEY; k++) {
		if (i >= len)
			return 0;
		i += scrub_char(b, len, i, decode, &c);
		if (k < 4 ? c != (unsigned char)"AIza"[k] : !scrub_gch(c))
			return 0;
		if (k >= SCRUB_GKEY - 4)
			hit->last[k - (SCRUB_GKEY - 4)] = (char)c;
	}
	if (i < len) {
		(void)scrub_char(b, len, i, decode, &c);
		if (scrub_gch(c))
			return 0;	/* longer: not a key's shape */
	}
	memcpy(hit->first, "AIza", 4);
	hit->len = SCRUB_GKEY;
	hit->end = i;
	return 1;
}

/* The longest secret of s at b[i], else a Google key there. */
static int
scrub_match(const struct scrub *s, const char *b, size_t len, size_t i,
    int decode, struct scrub_hit *hit)
{
	unsigned char	 c;
	uint64_t	 h = SCRUB_FNV0;
	size_t		 j = i, k, e, best = SIZE_MAX, bestlen = 0;
	uint32_t	 x;

	if (s != NULL && s->n > 0) {
		for (k = 0; k < s->p && j < len; k++) {
			j += scrub_char(b, len, j, decode, &c);
			h = scrub_fnv(h, c);
		}
		for (k = h & s->mask; (x = s->ti[k]) != 0;
		    k = (k + 1) & s->mask) {
			if (s->th[k] != h || s->len[x - 1] <= bestlen ||
			    !scrub_cmp(b, len, i, decode, s->sec[x - 1],
			    s->len[x - 1], &e))
				continue;
			best = x - 1;
			bestlen = s->len[best];
			hit->end = e;
		}
		if (best != SIZE_MAX) {
			hit->len = bestlen;
			memcpy(hit->first, s->sec[best], 4);
			memcpy(hit->last, s->sec[best] + bestlen - 4, 4);
			return 1;
		}
	}
	return scrub_gkey(b, len, i, decode, hit);
}

/* Characters a masked form may show: none that means something in JSON,
 * a URL or a header. */
static int
scrub_showable(const char *p)
{
	size_t	 i;

	for (i = 0; i < 4; i++)
		if (!scrub_gch((unsigned char)p[i]) && p[i] != '.')
			return 0;
	return 1;
}

/* The masked form of what hit found into m; returns its length. */
static size_t
scrub_mask(const struct scrub_hit *hit, char *m)
{
	if (hit->len < SCRUB_SHORT || !scrub_showable(hit->first) ||
	    !scrub_showable(hit->last)) {
		memcpy(m, SCRUB_ELLIPSIS, 3);
		return 3;
	}
	memcpy(m, hit->first, 4);
	memcpy(m + 4, SCRUB_ELLIPSIS, 3);
	memcpy(m + 7, hit->last, 4);
	return 11;
}

static size_t
scrub_pass(const struct scrub *s, char *b, size_t len, int decode,
    int *hits)
{
	static const unsigned char only_a[1] = { 'A' };
	const uint8_t	*start = s != NULL ? s->start : scrub_start_none;
	struct scrub_finder f;
	struct scrub_hit hit;
	unsigned char	 c0, c1;
	char		 m[16];
	size_t		 i = 0, w0, w = 0, copied = 0, ml;
	int		 fast = s == NULL || s->nfind > 0;

	if (fast)
		scrub_finder_init(&f, s != NULL ? s->find : only_a,
		    s != NULL ? s->nfind : 1, decode);
	while (i + 1 < len) {
		/* Fast over bytes no secret starts with.  Decoded, an escape
		 * starts at its backslash or percent sign, and is stepped
		 * over whole: no match starts inside one.  (Bytes at and
		 * after i are never written: masks go before them.) */
		if (fast) {
			if ((i = scrub_finder_next(&f, b, len, i)) + 1 >= len)
				break;
		} else if (!start[(unsigned char)b[i]] && (!decode ||
		    (b[i] != '\\' && b[i] != '%'))) {
			i++;
			continue;
		}
		w0 = scrub_char(b, len, i, decode, &c0);
		if (i + w0 >= len)
			break;
		(void)scrub_char(b, len, i + w0, decode, &c1);
		if (((c0 == 'A' && c1 == 'I') || (s != NULL &&
		    scrub_bigram(s, c0, c1))) && scrub_match(s, b, len, i,
		    decode, &hit)) {
			memmove(b + w, b + copied, i - copied);
			w += i - copied;
			ml = scrub_mask(&hit, m);
			memcpy(b + w, m, ml);
			w += ml;
			copied = i = hit.end;
			(*hits)++;
			continue;
		}
		i += w0;
	}
	memmove(b + w, b + copied, len - copied);
	return w + len - copied;
}

/*
 * Masks, in place, every secret of s (NULL: none) and every Google key in
 * b[0..len), as they stand and as they read once decoded.  Returns the new
 * length (never more than len).
 *
 * Until nothing is found: a mask shows its secret's last 4 characters,
 * and they may begin another secret that overlapped it (or a Google key
 * may swallow the start of a secret), which the next round then masks.
 * Every mask is shorter than what it replaces, so the rounds end; a text
 * with nothing in it takes one.  Scrubbing twice is once.
 */
size_t
scrub_text(const struct scrub *s, char *b, size_t len)
{
	int	 hits;

	do {
		hits = 0;
		len = scrub_pass(s, b, len, 0, &hits);
		if (memchr(b, '\\', len) != NULL || memchr(b, '%', len) != NULL)
			len = scrub_pass(s, b, len, 1, &hits);
	} while (hits > 0);
	return len;
}

/*
 * scrub_text() with the one secret given (a key under test, say) and
 * nothing else but Google keys; needs no memory of its own.
 */
size_t
scrub_one(const char *secret, char *b, size_t len)
{
	struct scrub	 s;
	const char	*sec[1];
	uint32_t	 l[1];
	uint64_t	 th[16];
	uint32_t	 ti[16];

	memset(&s, 0, sizeof(s));
	memset(ti, 0, sizeof(ti));
	s.sec = sec;
	s.len = l;
	s.th = th;
	s.ti = ti;
	scrub_fill(&s, &secret, 1);
	return scrub_text(&s, b, len);
}

/* scrub_text() on a NUL-terminated string, which stays one. */
void
scrub_str(const struct scrub *s, char *str)
{
	str[scrub_text(s, str, strlen(str))] = '\0';
}
