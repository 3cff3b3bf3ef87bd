/*
 * Unit tests of scrub.c: pool keys and tokens masked wherever they stand
 * (alone, glued to other key characters, in a URL, JSON-escaped,
 * percent-encoded), Google-shaped keys masked without a pool, everything
 * else left byte for byte, and thousands of secrets at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "scrub.h"
#include "check_fixtures.h"
#include "check_suites.h"

/* Fakes of the right shapes; none of them was ever a key. */
#define K1	FIX_KEY
#define K2	"AIzaSyB_other-key_0123456789ABCDEFGHIJK"
#define KAQ	"AQ.Ab8RN6LdummyPoolKeyValue0123456789xyz"
#define ELL	"\xe2\x80\xa6"

/* in, scrubbed with the secrets keys[0..n), into buf (a string). */
static size_t
scrub(char *buf, size_t cap, const char *in, const char *const *keys,
    size_t n)
{
	struct scrub	*s = NULL;
	size_t		 len = strlen(in), out;

	ck_assert_uint_lt(len, cap);
	memcpy(buf, in, len + 1);
	if (keys != NULL)
		ck_assert_ptr_nonnull(s = scrub_new(keys, n));
	out = scrub_text(s, buf, len);
	ck_assert_uint_le(out, len);
	buf[out] = '\0';
	scrub_free(s);
	return out;
}

START_TEST(t_scrub)
{
	const char	*pool[] = { K2, KAQ };
	const char	*withnull[] = { KAQ, NULL, K2 };
	char		 buf[4096];
	size_t		 n;

	ck_assert_uint_eq(strlen(K1), 39);
	ck_assert_uint_eq(strlen(K2), 39);

	/* In the message and in a JSON metadata field, not in the pool. */
	n = scrub(buf, sizeof(buf), fix_b403_suspended, pool, 2);
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_ptr_null(strstr(buf, K1));
	ck_assert_ptr_nonnull(strstr(buf,
	    "Consumer 'api_key:AIza" ELL "jKLM' has been suspended."));
	ck_assert_ptr_nonnull(strstr(buf,
	    "\"containerInfo\": \"api_key:AIza" ELL "jKLM\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"projects/895908428397\""));
	ck_assert_ptr_nonnull(strstr(buf,
	    "\"generativelanguage.googleapis.com\""));

	/* Several keys, pool ones of any shape, in a URL, at a full stop. */
	n = scrub(buf, sizeof(buf), "GET /v1beta/models/m:g?key=" K2
	    "&alt=sse; also " KAQ ". And " K1 ",", pool, 2);
	ck_assert_str_eq(buf, "GET /v1beta/models/m:g?key=AIza" ELL "HIJK"
	    "&alt=sse; also AQ.A" ELL "9xyz. And AIza" ELL "jKLM,");
	ck_assert_uint_eq(n, strlen(buf));

	/* A NULL in the list is skipped. */
	n = scrub(buf, sizeof(buf), "also " KAQ ". And " K2, withnull, 3);
	ck_assert_str_eq(buf, "also AQ.A" ELL "9xyz. And AIza" ELL "HIJK");

	/* At the very start and end. */
	n = scrub(buf, sizeof(buf), K1 " " KAQ, pool, 2);
	ck_assert_str_eq(buf, "AIza" ELL "jKLM AQ.A" ELL "9xyz");

	/* Not keys: left alone, byte for byte. */
	{
		const char *keep = "AIzaShort AIzaSyDUMMYdummy0123456789abcdefghijKLMx"
		    " xAIza generativelanguage.googleapis.com "
		    "QUl6YVN5RFVNTVlkdW1teTAxMjM0NTY3ODlhYmNkZWZnaGlq "
		    "GenerateRequestsPerDayPerProjectPerModel-FreeTier "
		    "AQ.Ab8RN6LdummyPoolKeyValue0123456789xy " ELL " 100% \\n "
		    "%4 \\u00 \\";

		n = scrub(buf, sizeof(buf), keep, pool, 2);
		ck_assert_str_eq(buf, keep);
		ck_assert_uint_eq(n, strlen(keep));
	}

	/* A key glued to other key characters is still a Google key. */
	n = scrub(buf, sizeof(buf), "api_key" K1 ".", NULL, 0);
	ck_assert_str_eq(buf, "api_keyAIza" ELL "jKLM.");

	/* Twice is once. */
	{
		char	 once[4096];

		n = scrub(once, sizeof(once), fix_b403_suspended, pool, 2);
		ck_assert_uint_eq(scrub(buf, sizeof(buf), once, pool, 2), n);
		ck_assert_str_eq(buf, once);
	}
}
END_TEST

/* What the issue found passing through: a pool key next to key
 * characters on either side, or escaped. */
START_TEST(t_scrub_glued_and_escaped)
{
	const char	*pool[] = { K2, KAQ };
	char		 buf[4096];

	scrub(buf, sizeof(buf), K2 "_x " K2 "-y " K2 "0 x" K2 " " KAQ "Z9",
	    pool, 2);
	ck_assert_str_eq(buf, "AIza" ELL "HIJK_x AIza" ELL "HIJK-y AIza" ELL
	    "HIJK0 xAIza" ELL "HIJK AQ.A" ELL "9xyzZ9");

	/* JSON's \u escapes, upper and lower case hex, anywhere in it. */
	scrub(buf, sizeof(buf), "{\"m\": \"\\u0041IzaSyB_other-key_0123456789"
	    "ABCDEFGHIJK\", \"n\": \"AIzaSyB_other\\u002dkey_0123456789ABCDEF"
	    "GHI\\u004a\\u004B\"}", pool, 2);
	ck_assert_str_eq(buf, "{\"m\": \"AIza" ELL "HIJK\", \"n\": \"AIza" ELL
	    "HIJK\"}");

	/* Percent-encoded, in a URL. */
	scrub(buf, sizeof(buf), "https://h/u?key=%41%49zaSyB_other-key_0123456789"
	    "ABCDEFGHIJ%4b&upload_id=1", pool, 2);
	ck_assert_str_eq(buf, "https://h/u?key=AIza" ELL "HIJK&upload_id=1");

	/* A Google-shaped key that is in no pool, escaped. */
	scrub(buf, sizeof(buf), "\"\\u0041IzaSyDUMMYdummy0123456789abcdefghij"
	    "KLM\"", NULL, 0);
	ck_assert_str_eq(buf, "\"AIza" ELL "jKLM\"");

	/* Escapes around a key are kept; the text stays valid JSON. */
	scrub(buf, sizeof(buf), "\"a\\n" K2 "\\\"b\\\\\"", pool, 2);
	ck_assert_str_eq(buf, "\"a\\nAIza" ELL "HIJK\\\"b\\\\\"");
}
END_TEST

START_TEST(t_scrub_tokens)
{
	/* Tokens are secrets of any printable shape: a quote or a percent
	 * sign in one is found as it is written, and never shown. */
	const char	*tok[] = { "s3cr%t\"tok", "abc", "tok-en/with.slash" };
	char		 buf[256];

	scrub(buf, sizeof(buf), "k=s3cr%t\"tok abc x-tok-en/with.slash-y",
	    tok, 3);
	ck_assert_str_eq(buf, "k=" ELL " abc x-tok-" ELL "lash-y");
	scrub(buf, sizeof(buf), "k=tok-en\\/with.slash", tok, 3);
	ck_assert_str_eq(buf, "k=tok-" ELL "lash");
	scrub(buf, sizeof(buf), "k=tok-en%2Fwith.slash", tok, 3);
	ck_assert_str_eq(buf, "k=tok-" ELL "lash");
}
END_TEST

START_TEST(t_scrub_short_and_many)
{
	const char	*shortk[] = { "secret12" , "abc" };
	char		**many, *text, buf[256];
	size_t		 i, n, nmany = 10000;
	struct scrub	*s;

	/* Short keys mask to the ellipsis alone; 3 characters: not at all.
	 * The longest secret wins. */
	scrub(buf, sizeof(buf), "k=secret12 abc secret123", shortk, 2);
	ck_assert_str_eq(buf, "k=" ELL " abc " ELL "3");

	/* Ten thousand pool keys. */
	many = calloc(nmany, sizeof(*many));
	ck_assert_ptr_nonnull(many);
	for (i = 0; i < nmany; i++) {
		many[i] = malloc(64);
		ck_assert_ptr_nonnull(many[i]);
		snprintf(many[i], 64, "AQ.pool%06zuKEYxxxxxxxxxxxxxxxxxxxxxxx", i);
	}
	ck_assert_ptr_nonnull(s = scrub_new((const char *const *)many, nmany));
	text = malloc(64 * 1024);
	ck_assert_ptr_nonnull(text);
	for (n = 0; n + 64 < 60 * 1024;)
		n += (size_t)sprintf(text + n, "word AQ.pool%06zuKEYxxxxxxxxxxxx "
		    "token-%zu ", n % 7000, n);
	n += (size_t)sprintf(text + n, "%sX.", many[4321]);
	n = scrub_text(s, text, n);
	text[n] = '\0';
	ck_assert_ptr_null(strstr(text, many[4321]));
	ck_assert_ptr_nonnull(strstr(text, "AQ.p" ELL "xxxxX."));
	ck_assert_ptr_nonnull(strstr(text, "word AQ.pool000000KEYxxxxxxxxxxxx "));
	scrub_free(s);
	for (i = 0; i < nmany; i++)
		free(many[i]);
	free(many);
	free(text);
}
END_TEST

/* Secrets that overlap: a mask shows its last 4 characters, which must
 * not bring back another secret that began among them.  (Found by
 * tests/fuzz/fuzz_scrub.c.) */
START_TEST(t_scrub_overlaps)
{
	const char	*two[] = { "abcdefghijklmnop1234", "1234-the-other-secret" };
	const char	*aq[] = { "AQ.Ab8RN6FuzzPoolKeyTwo0000000000000k002" };
	char		 buf[256];

	scrub(buf, sizeof(buf), "x abcdefghijklmnop1234-the-other-secret y",
	    two, 2);
	ck_assert_ptr_null(strstr(buf, two[1]));
	ck_assert_ptr_null(strstr(buf, two[0]));
	/* A Google-shaped run that swallows a secret's first characters. */
	scrub(buf, sizeof(buf), "AIzaSyDUMMYdummyAM0123456789abcdef%41jK"
	    "AQ.Ab8RN6F%75zzPoolKeyTwo0000000000000k002LM", aq, 1);
	ck_assert_ptr_null(strstr(buf, "Ab8RN6FuzzPool"));
	ck_assert_ptr_null(strstr(buf, "Ab8RN6F%75zzPool"));
}
END_TEST

/* A key cut anywhere by the end of the text: its first part is no key. */
START_TEST(t_scrub_every_cut)
{
	const char	*pool[] = { K2 };
	struct scrub	*s;
	char		 buf[128];
	size_t		 cut, n;

	ck_assert_ptr_nonnull(s = scrub_new(pool, 1));
	for (cut = 0; cut <= strlen(K2) + 2; cut++) {
		snprintf(buf, sizeof(buf), "x " K2 " y");
		n = scrub_text(s, buf, cut);
		ck_assert_uint_le(n, cut);
		if (cut >= 2 + 39) {
			ck_assert(memcmp(buf, "x AIza" ELL "HIJK", 13) == 0);
			ck_assert_uint_eq(n, cut - 39 + 11);
		} else
			ck_assert_uint_eq(n, cut);
	}
	scrub_free(s);
}
END_TEST

Suite *
scrub_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("scrub");
	tc = tcase_create("scrub");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, t_scrub);
	tcase_add_test(tc, t_scrub_glued_and_escaped);
	tcase_add_test(tc, t_scrub_tokens);
	tcase_add_test(tc, t_scrub_short_and_many);
	tcase_add_test(tc, t_scrub_every_cut);
	tcase_add_test(tc, t_scrub_overlaps);
	suite_add_tcase(s, tc);
	return s;
}
