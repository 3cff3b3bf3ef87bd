/*
 * usagescan.c: the usage and the error of an answer, in every framing
 * (JSON, SSE with CRLF or LF, a JSON array, OpenAI's) and at every split
 * point, and its bounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "check_suites.h"
#include "usagescan.h"

struct result {
	struct gem_usage u;
	int		 error_seen;
	int		 error_code;
	char		 error_status[32];
};

static void
result_of(const struct gem_scan *s, struct result *r)
{
	memset(r, 0, sizeof(*r));
	r->u = s->usage;
	r->error_seen = s->error_seen;
	r->error_code = s->error_code;
	memcpy(r->error_status, s->error_status, sizeof(r->error_status));
}

static int
result_eq(const struct result *a, const struct result *b)
{
	return a->u.prompt == b->u.prompt &&
	    a->u.candidates == b->u.candidates &&
	    a->u.cached == b->u.cached && a->u.thoughts == b->u.thoughts &&
	    a->u.tool_use == b->u.tool_use && a->u.total == b->u.total &&
	    a->u.seen == b->u.seen && a->error_seen == b->error_seen &&
	    a->error_code == b->error_code &&
	    strcmp(a->error_status, b->error_status) == 0;
}

static void
scan_whole(int mode, const char *p, size_t n, struct result *r)
{
	static struct gem_scan	 s;

	gem_scan_init(&s, mode);
	gem_scan_feed(&s, p, n);
	result_of(&s, r);
}

/*
 * The same answer fed whole, split at every point, byte by byte, and in
 * irregular pieces must give one result.
 */
static void
scan_all_splits(int mode, const char *p, size_t n, struct result *r)
{
	static struct gem_scan	 s;
	struct result		 x;
	size_t			 k, off, step;
	unsigned		 seed = 12345;

	scan_whole(mode, p, n, r);
	for (k = 0; k <= n; k++) {
		gem_scan_init(&s, mode);
		gem_scan_feed(&s, p, k);
		gem_scan_feed(&s, p + k, n - k);
		result_of(&s, &x);
		ck_assert_msg(result_eq(&x, r),
		    "split at %zu differs", k);
	}
	gem_scan_init(&s, mode);
	for (k = 0; k < n; k++)
		gem_scan_feed(&s, p + k, 1);
	result_of(&s, &x);
	ck_assert_msg(result_eq(&x, r), "byte by byte differs");
	gem_scan_init(&s, mode);
	for (off = 0; off < n; off += step) {
		seed = seed * 1103515245 + 12345;
		step = 1 + (seed >> 16) % 23;
		if (step > n - off)
			step = n - off;
		gem_scan_feed(&s, p + off, step);
	}
	result_of(&s, &x);
	ck_assert_msg(result_eq(&x, r), "random pieces differ");
}

static void
scan_str(int mode, const char *p, struct result *r)
{
	scan_all_splits(mode, p, strlen(p), r);
}

/* A plain generateContent answer with decoys in the text. */
static const char a_plain[] =
"{\n"
"  \"candidates\": [\n"
"    {\n"
"      \"content\": {\n"
"        \"parts\": [\n"
"          {\"text\": \"Here: \\\"usageMetadata\\\": {\\\"promptTokenCount\\\""
": 999} and a backslash \\\\\\\" and {[ \\u0022usageMetadata\\u0022\"},\n"
"          {\"functionCall\": {\"name\": \"f\", \"args\": {\"usageMetadata\":"
" {\"promptTokenCount\": 777}, \"error\": {\"code\": 1}}}}\n"
"        ],\n"
"        \"role\": \"model\"\n"
"      },\n"
"      \"finishReason\": \"STOP\",\n"
"      \"index\": 0\n"
"    }\n"
"  ],\n"
"  \"usageMetadata\": {\n"
"    \"promptTokenCount\": 12,\n"
"    \"candidatesTokenCount\": 34,\n"
"    \"totalTokenCount\": 80,\n"
"    \"cachedContentTokenCount\": 4,\n"
"    \"promptTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 12}],\n"
"    \"cacheTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 4}],\n"
"    \"thoughtsTokenCount\": 30,\n"
"    \"toolUsePromptTokenCount\": 4\n"
"  },\n"
"  \"modelVersion\": \"gemini-2.5-flash\",\n"
"  \"responseId\": \"abcDEF\"\n"
"}\n";

START_TEST(t_scan_plain)
{
	struct result	 r;

	scan_str(GEM_SCAN_JSON, a_plain, &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 12);
	ck_assert_int_eq(r.u.candidates, 34);
	ck_assert_int_eq(r.u.cached, 4);
	ck_assert_int_eq(r.u.thoughts, 30);
	ck_assert_int_eq(r.u.tool_use, 4);
	ck_assert_int_eq(r.u.total, 80);
	ck_assert_int_eq(r.error_seen, 0);

	/* The mode is a dialect: an SSE-labelled JSON body is still read. */
	scan_whole(GEM_SCAN_SSE, a_plain, strlen(a_plain), &r);
	ck_assert_int_eq(r.u.prompt, 12);
}
END_TEST

#define SSE_CHUNK(text, usage) \
	"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"" text \
	"\"}], \"role\": \"model\"}, \"index\": 0}], \"usageMetadata\": " usage \
	", \"modelVersion\": \"gemini-2.5-flash\", \"responseId\": \"r1\"}"

/* Cumulative chunks, early ones without candidatesTokenCount. */
static const char a_sse_crlf[] =
	SSE_CHUNK("Hel", "{\"promptTokenCount\": 10, \"totalTokenCount\": 10}")
	"\r\n\r\n"
	SSE_CHUNK("lo \\\"usageMetadata\\\": {}",
	    "{\"promptTokenCount\": 10, \"totalTokenCount\": 10, "
	    "\"promptTokensDetails\": [{\"modality\": \"TEXT\", "
	    "\"tokenCount\": 10}]}")
	"\r\n\r\n"
	"data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"!\"}],"
	" \"role\": \"model\"}, \"finishReason\": \"STOP\", \"index\": 0}], "
	"\"usageMetadata\": {\"promptTokenCount\": 10, \"candidatesTokenCount\":"
	" 20, \"totalTokenCount\": 45, \"thoughtsTokenCount\": 15}}\r\n\r\n";

static const char a_sse_lf[] =
	": keep-alive comment\n\n"
	SSE_CHUNK("a", "{\"promptTokenCount\": 5, \"totalTokenCount\": 5}")
	"\n\n"
	"event: message\nid: 7\n"
	SSE_CHUNK("b", "{\"promptTokenCount\": 5, \"candidatesTokenCount\": 2,"
	    " \"totalTokenCount\": 7}")
	"\n\n";

START_TEST(t_scan_sse)
{
	struct result	 r;

	scan_str(GEM_SCAN_SSE, a_sse_crlf, &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 10);	/* last, not 30: never summed */
	ck_assert_int_eq(r.u.candidates, 20);
	ck_assert_int_eq(r.u.thoughts, 15);
	ck_assert_int_eq(r.u.total, 45);

	scan_str(GEM_SCAN_SSE, a_sse_lf, &r);
	ck_assert_int_eq(r.u.prompt, 5);
	ck_assert_int_eq(r.u.candidates, 2);
	ck_assert_int_eq(r.u.total, 7);

	/* Only the first chunk: candidates absent reads as 0. */
	scan_whole(GEM_SCAN_SSE, a_sse_lf, (size_t)(strstr(a_sse_lf,
	    "event:") - a_sse_lf), &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 5);
	ck_assert_int_eq(r.u.candidates, 0);
}
END_TEST

START_TEST(t_scan_sse_cut)
{
	struct result	 r;
	const char	*last;

	/* Cut inside the last chunk's usageMetadata: the one before stands. */
	last = strstr(a_sse_crlf, "\"candidatesTokenCount\": 20");
	ck_assert_ptr_nonnull(last);
	scan_all_splits(GEM_SCAN_SSE, a_sse_crlf, (size_t)(last - a_sse_crlf),
	    &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 10);
	ck_assert_int_eq(r.u.candidates, 0);
	ck_assert_int_eq(r.u.total, 10);

	/* A broken event does not derail the next one. */
	scan_str(GEM_SCAN_SSE,
	    "data: {\"candidates\": [{\"text\": \"unterminated\r\n\r\n"
	    "data: {\"usageMetadata\": {\"promptTokenCount\": 3, "
	    "\"totalTokenCount\": 4}}\r\n\r\n", &r);
	ck_assert_int_eq(r.u.prompt, 3);
	ck_assert_int_eq(r.u.total, 4);

	/*
	 * One event in two data lines (joined with LF, as the SSE spec has
	 * it): a CRLF ends a line, not the event.
	 */
	scan_str(GEM_SCAN_SSE,
	    "data: {\"usageMetadata\": {\"promptTokenCount\": 6,\r\n"
	    "data:\"totalTokenCount\": 9}}\r\n\r\n", &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 6);
	ck_assert_int_eq(r.u.total, 9);
}
END_TEST

/* streamGenerateContent without alt=sse: a pretty-printed JSON array. */
static const char a_array[] =
"[{\n"
"  \"candidates\": [\n"
"    {\n"
"      \"content\": {\n"
"        \"parts\": [\n"
"          {\n"
"            \"text\": \"The \\\"usageMetadata\\\"\\n is\"\n"
"          }\n"
"        ],\n"
"        \"role\": \"model\"\n"
"      },\n"
"      \"index\": 0\n"
"    }\n"
"  ],\n"
"  \"usageMetadata\": {\n"
"    \"promptTokenCount\": 7,\n"
"    \"totalTokenCount\": 7,\n"
"    \"promptTokensDetails\": [\n"
"      {\n"
"        \"modality\": \"TEXT\",\n"
"        \"tokenCount\": 7\n"
"      }\n"
"    ]\n"
"  },\n"
"  \"modelVersion\": \"gemini-2.5-flash\"\n"
"}\n"
",\r\n"
"{\n"
"  \"candidates\": [\n"
"    {\n"
"      \"content\": {\n"
"        \"parts\": [\n"
"          {\n"
"            \"text\": \" cumulative.\"\n"
"          }\n"
"        ],\n"
"        \"role\": \"model\"\n"
"      },\n"
"      \"finishReason\": \"STOP\",\n"
"      \"index\": 0\n"
"    }\n"
"  ],\n"
"  \"usageMetadata\": {\n"
"    \"promptTokenCount\": 7,\n"
"    \"candidatesTokenCount\": 9,\n"
"    \"totalTokenCount\": 16\n"
"  },\n"
"  \"modelVersion\": \"gemini-2.5-flash\"\n"
"}\n"
"]";

START_TEST(t_scan_array)
{
	struct result	 r;

	scan_str(GEM_SCAN_JSON, a_array, &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 7);
	ck_assert_int_eq(r.u.candidates, 9);
	ck_assert_int_eq(r.u.total, 16);
	ck_assert_int_eq(r.error_seen, 0);
}
END_TEST

static const char a_openai_json[] =
"{\"id\":\"x\",\"object\":\"chat.completion\",\"created\":1,\"model\":"
"\"gemini-2.5-flash\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
"\"assistant\",\"content\":\"hi \\\"usage\\\": {\\\"prompt_tokens\\\": 5}\"},"
"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":11,"
"\"completion_tokens\":22,\"total_tokens\":40,\"prompt_tokens_details\":"
"{\"cached_tokens\":3},\"completion_tokens_details\":{\"reasoning_tokens\":7}"
"}}";

static const char a_openai_sse[] =
"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"a\",\"role\":"
"\"assistant\"},\"index\":0}],\"created\":1,\"model\":\"gemini-2.5-flash\","
"\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n"
"data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"b\"},\"index\":0}]"
",\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":1,\"total_tokens\":12}"
"}\n\n"
"data: {\"id\":\"x\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\","
"\"index\":0}],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,"
"\"total_tokens\":13}}\n\n"
"data: [DONE]\n\n";

START_TEST(t_scan_openai)
{
	struct result	 r;

	scan_str(GEM_SCAN_OPENAI, a_openai_json, &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 11);
	ck_assert_int_eq(r.u.candidates, 22);
	ck_assert_int_eq(r.u.cached, 3);
	ck_assert_int_eq(r.u.thoughts, 7);
	ck_assert_int_eq(r.u.total, 40);

	scan_str(GEM_SCAN_OPENAI, a_openai_sse, &r);
	ck_assert_int_eq(r.u.seen, 1);
	ck_assert_int_eq(r.u.prompt, 11);
	ck_assert_int_eq(r.u.candidates, 2);
	ck_assert_int_eq(r.u.total, 13);
	ck_assert_int_eq(r.error_seen, 0);

	/* Gemini's name means nothing on the OpenAI path, and back. */
	scan_whole(GEM_SCAN_OPENAI, a_plain, strlen(a_plain), &r);
	ck_assert_int_eq(r.u.seen, 0);
	scan_whole(GEM_SCAN_JSON, a_openai_json, strlen(a_openai_json), &r);
	ck_assert_int_eq(r.u.seen, 0);
}
END_TEST

START_TEST(t_scan_errors)
{
	struct result	 r;

	scan_str(GEM_SCAN_SSE,
	    SSE_CHUNK("x", "{\"promptTokenCount\": 8, \"totalTokenCount\": 9}")
	    "\r\n\r\n"
	    "data: {\"error\": {\"code\": 503, \"message\": \"The model is "
	    "overloaded. Please try again later.\", \"status\": "
	    "\"UNAVAILABLE\"}}\r\n\r\n", &r);
	ck_assert_int_eq(r.u.prompt, 8);
	ck_assert_int_eq(r.error_seen, 1);
	ck_assert_int_eq(r.error_code, 503);
	ck_assert_str_eq(r.error_status, "UNAVAILABLE");

	scan_str(GEM_SCAN_JSON, "[{\n  \"error\": {\n    \"code\": 429,\n"
	    "    \"message\": \"quota\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n"
	    "  }\n}\n]", &r);
	ck_assert_int_eq(r.u.seen, 0);
	ck_assert_int_eq(r.error_seen, 1);
	ck_assert_int_eq(r.error_code, 429);
	ck_assert_str_eq(r.error_status, "RESOURCE_EXHAUSTED");

	scan_str(GEM_SCAN_OPENAI, "[{\"error\": {\"code\": 400, \"message\": "
	    "\"API key not valid.\", \"status\": \"INVALID_ARGUMENT\"}}]", &r);
	ck_assert_int_eq(r.error_seen, 1);
	ck_assert_int_eq(r.error_code, 400);

	/* Garbage is not an answer, and not a crash. */
	scan_str(GEM_SCAN_JSON, "}}]]\"\\{[{\"usageMetadata\":7}", &r);
	ck_assert_int_eq(r.u.seen, 0);
	ck_assert_int_eq(r.error_seen, 0);
}
END_TEST

/* A usageMetadata too big to keep is skipped; the one before stands. */
START_TEST(t_scan_overflow)
{
	static struct gem_scan	 s;
	char			*big;
	size_t			 n = 0, i;
	const char		*a = "{\"usageMetadata\": {\"promptTokenCount\": 1,"
				    " \"totalTokenCount\": 2}}";

	big = malloc(3 * GEM_SCAN_CAP);
	ck_assert_ptr_nonnull(big);
	n += (size_t)sprintf(big, "[%s, {\"usageMetadata\": {\"junk\": [", a);
	for (i = 0; i < GEM_SCAN_CAP; i++)
		n += (size_t)sprintf(big + n, "1,");
	n += (size_t)sprintf(big + n, "1], \"promptTokenCount\": 99}}]");
	gem_scan_init(&s, GEM_SCAN_JSON);
	gem_scan_feed(&s, big, n);
	ck_assert_int_eq(s.usage.seen, 1);
	ck_assert_int_eq(s.usage.prompt, 1);
	ck_assert_int_eq(s.usage.total, 2);
	free(big);
}
END_TEST

/*
 * Megabytes of text with escaped quotes and decoys, in JSON and in SSE:
 * constant memory, one pass.
 */
static char *
big_answer(int sse, size_t target, size_t *lenp)
{
	static const char	 piece[] = "lorem \\\"usageMetadata\\\": "
				    "{\\\"promptTokenCount\\\": 1} \\\\ ipsum\\n";
	const char		*head = sse ? "data: {\"candidates\": [{"
				    "\"content\": {\"parts\": [{\"text\": \"" :
				    "{\"candidates\": [{\"content\": {\"parts\": "
				    "[{\"text\": \"";
	const char		*tail = sse ? "\"}]}}], \"usageMetadata\": "
				    "{\"promptTokenCount\": 5, "
				    "\"candidatesTokenCount\": 1250000, "
				    "\"totalTokenCount\": 1250005}}\r\n\r\n" :
				    "\"}]}}], \"usageMetadata\": "
				    "{\"promptTokenCount\": 5, "
				    "\"candidatesTokenCount\": 1250000, "
				    "\"totalTokenCount\": 1250005}}";
	char			*b;
	size_t			 n = 0;

	b = malloc(target + 1024);
	ck_assert_ptr_nonnull(b);
	memcpy(b, head, strlen(head));
	n = strlen(head);
	while (n + sizeof(piece) < target) {
		memcpy(b + n, piece, sizeof(piece) - 1);
		n += sizeof(piece) - 1;
	}
	memcpy(b + n, tail, strlen(tail));
	n += strlen(tail);
	*lenp = n;
	return b;
}

START_TEST(t_scan_huge)
{
	static struct gem_scan	 s;
	struct result		 whole, x;
	char			*b;
	size_t			 n, off, step;
	int			 sse, mode;

	for (sse = 0; sse <= 1; sse++) {
		mode = sse ? GEM_SCAN_SSE : GEM_SCAN_JSON;
		b = big_answer(sse, 5 * 1024 * 1024, &n);
		scan_whole(mode, b, n, &whole);
		ck_assert_int_eq(whole.u.seen, 1);
		ck_assert_int_eq(whole.u.prompt, 5);
		ck_assert_int_eq(whole.u.candidates, 1250000);
		ck_assert_int_eq(whole.u.total, 1250005);

		/* Socket-sized pieces, and pieces of an odd size. */
		for (step = 16384; step >= 7; step = step == 16384 ? 7 : 0) {
			gem_scan_init(&s, mode);
			for (off = 0; off < n; off += step)
				gem_scan_feed(&s, b + off,
				    n - off < step ? n - off : step);
			result_of(&s, &x);
			ck_assert(result_eq(&x, &whole));
			ck_assert_uint_eq(s.bytes, n);
		}
		free(b);
	}
}
END_TEST

Suite *
usagescan_suite(void)
{
	Suite	*s = suite_create("usagescan");
	TCase	*tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_scan_plain);
	tcase_add_test(tc, t_scan_sse);
	tcase_add_test(tc, t_scan_sse_cut);
	tcase_add_test(tc, t_scan_array);
	tcase_add_test(tc, t_scan_openai);
	tcase_add_test(tc, t_scan_errors);
	tcase_add_test(tc, t_scan_overflow);
	tcase_add_test(tc, t_scan_huge);
	suite_add_tcase(s, tc);
	return s;
}
