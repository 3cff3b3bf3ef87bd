/*
 * Fuzz target: reset_edit() of src/reset.c, which sets
 * next_quota_reset_datetime in the text of the user's config file.
 *
 * The input is the file.  Nothing but a JSON object (as cJSON reads it,
 * strictly, as the config loader does) may be edited.  An edit is valid
 * JSON whose first next_quota_reset_datetime is the value, and whose other
 * members are those of the input, in order, each the same.  Editing the
 * output again with the value changes nothing, and with another changes
 * only the value's text.  A simple text (see simple()) that the daemon
 * would load must be edited, and more is promised for it: when it had no
 * such member, the output is the input with one run of bytes put in,
 * after reset_after (else first); when it had one, only the text of the
 * first one's value is replaced.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz.h"
#include "reset.h"

#define FIELD	"next_quota_reset_datetime"
#define RESET_AFTER	"reset_after"
/* The same length, other first and last characters: where two edits
 * differ is where the value stands. */
#define VALUE	"2031-07-04 13:37"
#define VALUE2	"1999-12-31 23:58"

/*
 * No byte below 0x20 but tab, CR and LF, and no backslash: a text read
 * the same way by cJSON and by reset_edit().  cJSON takes other control
 * bytes for blanks between tokens, and decodes escapes in names, where
 * reset_edit() finds no blank and compares names as written.
 */
static int
simple(const uint8_t *p, size_t len)
{
	size_t	 i;

	for (i = 0; i < len; i++)
		if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\r' &&
		    p[i] != '\n') || p[i] == '\\')
			return 0;
	return 1;
}

/* The text as the config loader parses it: the NUL after it included. */
static cJSON *
parse(const char *text, size_t len)
{
	return cJSON_ParseWithLengthOpts(text, len + 1, NULL, 1);
}

/*
 * Are two values the same, duplicate names and their order included
 * (cJSON_Compare() looks a name up, and finds the first of duplicates)?
 */
static int
same(const cJSON *a, const cJSON *b)
{
	char	*pa, *pb;
	int	 eq;

	if ((pa = cJSON_PrintUnformatted(a)) == NULL ||
	    (pb = cJSON_PrintUnformatted(b)) == NULL)
		abort();
	eq = strcmp(pa, pb) == 0;
	cJSON_free(pa);
	cJSON_free(pb);
	return eq;
}

/* Past the members a and b have in common, the same, in order. */
static void
skip_same(const cJSON **a, const cJSON **b)
{
	while (*a != NULL && *b != NULL &&
	    strcmp((*a)->string, (*b)->string) == 0 && same(*a, *b)) {
		*a = (*a)->next;
		*b = (*b)->next;
	}
}

/* The rest of a and of b: the same members, in order. */
static int
rest_same(const cJSON *a, const cJSON *b)
{
	skip_same(&a, &b);
	return a == NULL && b == NULL;
}

/*
 * The members of out are those of in, in order and each the same, but
 * for one next_quota_reset_datetime that is now VALUE.  strict: the first
 * one of in replaced, or, when in has none, one put in right after the
 * first reset_after (the first member when there is none).  Otherwise
 * (a text whose names cJSON reads other than as written) either will do.
 */
static void
check_members(const cJSON *in, const cJSON *out, int strict)
{
	const cJSON	*a = in->child, *b = out->child, *ra;
	int		 had = cJSON_GetObjectItemCaseSensitive(in, FIELD) != NULL;
	int		 replaced, inserted;

	skip_same(&a, &b);
	if (a == NULL && b == NULL)
		return;		/* it was VALUE already */
	FUZZ_CHECK(b != NULL && strcmp(b->string, FIELD) == 0 &&
	    cJSON_IsString(b) && strcmp(b->valuestring, VALUE) == 0,
	    "member \"%s\" differs", b != NULL ? b->string : a->string);
	replaced = a != NULL && strcmp(a->string, FIELD) == 0 &&
	    rest_same(a->next, b->next);
	inserted = rest_same(a, b->next);
	if (!strict) {
		FUZZ_CHECK(replaced || inserted, "more than %s changed", FIELD);
		return;
	}
	FUZZ_CHECK(had ? replaced : inserted, "more than %s changed", FIELD);
	ra = cJSON_GetObjectItemCaseSensitive(out, RESET_AFTER);
	FUZZ_CHECK(had || (ra == NULL ? b == out->child : b->prev == ra),
	    "%s not put in after %s", FIELD, RESET_AFTER);
}

/* How many bytes a and b share at the start, and then at the end. */
static void
common(const char *a, size_t alen, const char *b, size_t blen, size_t *pre,
    size_t *suf)
{
	size_t	 n = alen < blen ? alen : blen, p = 0, s = 0;

	while (p < n && a[p] == b[p])
		p++;
	while (s < n - p && a[alen - 1 - s] == b[blen - 1 - s])
		s++;
	*pre = p;
	*suf = s;
}

/*
 * t (tlen bytes, NUL after them) has old as its first
 * next_quota_reset_datetime: an edit replaces exactly the text of that
 * value.  Two edits with values of the same length that differ at both
 * ends show where the new value stands; every byte outside its quotes is
 * t's, and what they replace in t is a JSON value, old's.
 */
static void
check_replaced(const char *t, size_t tlen, const cJSON *old)
{
	char	*x, *y, *span;
	size_t	 xlen, ylen, pre, suf, head, tail, n = strlen(VALUE);
	cJSON	*was;

	FUZZ_CHECK(reset_edit(t, tlen, VALUE, &x, &xlen) == 0 &&
	    reset_edit(t, tlen, VALUE2, &y, &ylen) == 0, "refused");
	common(x, xlen, y, ylen, &pre, &suf);
	FUZZ_CHECK(xlen == ylen && pre + n + suf == xlen && pre >= 1 &&
	    x[pre - 1] == '"' && x[pre + n] == '"',
	    "two values differ in more than the value");
	head = pre - 1;
	tail = xlen - (pre + n + 1);
	FUZZ_CHECK(head + tail <= tlen && memcmp(x, t, head) == 0 &&
	    memcmp(x + xlen - tail, t + tlen - tail, tail) == 0,
	    "a byte outside the value changed");
	if ((span = strndup(t + head, tlen - tail - head)) == NULL)
		abort();
	was = parse(span, tlen - tail - head);
	FUZZ_CHECK(was != NULL && same(was, old),
	    "what was replaced is not the old value: %s", span);
	cJSON_Delete(was);
	free(span);
	free(x);
	free(y);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	cJSON	*in, *out;
	char	*text, *o, *o2;
	size_t	 olen, o2len, pre, suf;
	int	 rv, loadable, had, strict;

	/* A NUL-terminated copy, as fileio_read() gives it. */
	if ((text = malloc(len + 1)) == NULL)
		abort();
	memcpy(text, data, len);
	text[len] = '\0';
	rv = reset_edit(text, len, VALUE, &o, &olen);
	in = parse(text, len);
	loadable = in != NULL && cJSON_IsObject(in);
	strict = simple(data, len);
	if (rv == -1) {
		FUZZ_CHECK(o == NULL, "refused, but an output");
		FUZZ_CHECK(!loadable || !strict,
		    "a config the daemon loads refused");
		goto done;
	}
	FUZZ_CHECK(loadable, "edited what is not a JSON object");
	FUZZ_CHECK(o != NULL && o[olen] == '\0', "output not NUL-terminated");
	out = parse(o, olen);
	FUZZ_CHECK(out != NULL && cJSON_IsObject(out),
	    "output not a JSON object: %s", o);
	check_members(in, out, strict);
	had = cJSON_GetObjectItemCaseSensitive(in, FIELD) != NULL;
	if (!had) {
		/* Put in: every byte of the input kept, in one piece. */
		common(text, len, o, olen, &pre, &suf);
		FUZZ_CHECK(pre + suf == len, "input bytes changed");
	} else if (strict)
		check_replaced(text, len,
		    cJSON_GetObjectItemCaseSensitive(in, FIELD));
	/* Its own output: the same value again changes nothing, another
	 * replaces it. */
	FUZZ_CHECK(reset_edit(o, olen, VALUE, &o2, &o2len) == 0 &&
	    o2len == olen && memcmp(o2, o, olen) == 0,
	    "the same value again changed the text");
	free(o2);
	check_replaced(o, olen, cJSON_GetObjectItemCaseSensitive(out, FIELD));
	cJSON_Delete(out);
	free(o);
done:
	cJSON_Delete(in);
	free(text);
	return 0;
}
