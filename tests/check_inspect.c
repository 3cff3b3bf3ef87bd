/*
 * inspect.c: the model a request names, in its path or in its body, and
 * the token estimate of a body.
 */
#include <string.h>

#include <check.h>

#include "check_suites.h"
#include "config.h"
#include "inspect.h"

START_TEST(t_model_from_path)
{
	static const struct {
		const char	*path;
		const char	*model;	/* NULL: -1 expected */
	} t[] = {
		{ "/v1beta/models/gemini-2.5-flash:generateContent",
		    "gemini-2.5-flash" },
		{ "/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
		    "gemini-2.5-pro" },
		{ "/v1beta/models/gemini-embedding-001:batchEmbedContents",
		    "gemini-embedding-001" },
		{ "/v1beta/models/gemini-2.5-flash", "gemini-2.5-flash" },
		{ "/v1beta/models/gemini-2.5-flash%3AgenerateContent",
		    "gemini-2.5-flash" },
		{ "/v1alpha/models/x-1:countTokens", "x-1" },
		{ "/v1beta/models", NULL },
		{ "/v1beta/models/", NULL },
		{ "/v1beta/models/:generateContent", NULL },
		{ "/v1beta/models/veo-2.0/operations/abc", NULL },
		{ "/v1beta/tunedModels/t1:generateContent", NULL },
		{ "/v1beta/openai/chat/completions", NULL },
		{ "/v1beta/files/abc", NULL },
		{ "/v2/models/x:generateContent", NULL },
		{ "/v1beta/models/a b:generateContent", NULL },
		{ "/v1beta/models/a%20b:generateContent", NULL },
	};
	char	 out[CFG_NAME_MAX], tiny[4];
	size_t	 i;
	int	 rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = gem_model_from_path(t[i].path, strlen(t[i].path), out,
		    sizeof(out));
		if (t[i].model == NULL)
			ck_assert_msg(rc == -1, "%s", t[i].path);
		else {
			ck_assert_msg(rc == 0, "%s", t[i].path);
			ck_assert_str_eq(out, t[i].model);
		}
	}
	/* The length given is the path's: the query is not looked at. */
	ck_assert_int_eq(gem_model_from_path("/v1beta/models/m1:x?key=y", 20,
	    out, sizeof(out)), 0);
	ck_assert_str_eq(out, "m1");
	ck_assert_int_eq(gem_model_from_path("/v1/models/gemini:x", 19, tiny,
	    sizeof(tiny)), -1);
	ck_assert_int_eq(gem_model_from_path("/v1/models/gem:x", 16, tiny,
	    sizeof(tiny)), 0);
	ck_assert_str_eq(tiny, "gem");
}
END_TEST

START_TEST(t_model_from_body)
{
	static const struct {
		const char	*body;
		const char	*model;
	} t[] = {
		{ "{\"model\": \"gemini-2.5-flash\", \"messages\": []}",
		    "gemini-2.5-flash" },
		{ "  {\n \"messages\": [{\"role\": \"user\", \"content\": "
		    "\"{\\\"model\\\": \\\"evil\\\"}\"}],\n \"model\": "
		    "\"models/gemini-2.0-flash\"}", "gemini-2.0-flash" },
		{ "{\"extra_body\": {\"model\": \"x\", \"y\": [1, {\"a\": "
		    "\"]\"}]}, \"n\": 1, \"ok\": true, \"model\": \"y-2\"}", "y-2" },
		{ "{\"input\": \"hi\", \"model\": \"models\\/text-embedding-004\"}",
		    "text-embedding-004" },
		{ "{\"messages\": []}", NULL },
		{ "{\"model\": 5}", NULL },
		{ "{\"model\": \"\"}", NULL },
		{ "{\"model\": \"models/\"}", NULL },
		{ "{\"model\": \"a b\"}", NULL },
		{ "{\"model\": \"a\\u0041\"}", NULL },
		{ "[{\"model\": \"x\"}]", NULL },
		{ "{\"model\": \"unterminated", NULL },
		{ "not json", NULL },
		{ "", NULL },
	};
	char	 out[CFG_NAME_MAX];
	size_t	 i;
	int	 rc;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		rc = gem_model_from_body(t[i].body, strlen(t[i].body), out,
		    sizeof(out));
		if (t[i].model == NULL)
			ck_assert_msg(rc == -1, "%s", t[i].body);
		else {
			ck_assert_msg(rc == 0, "%s", t[i].body);
			ck_assert_str_eq(out, t[i].model);
		}
	}
}
END_TEST

START_TEST(t_estimate)
{
	ck_assert_int_eq(gem_estimate_tokens(0), 1);
	ck_assert_int_eq(gem_estimate_tokens(1), 1);
	ck_assert_int_eq(gem_estimate_tokens(4), 1);
	ck_assert_int_eq(gem_estimate_tokens(5), 2);
	ck_assert_int_eq(gem_estimate_tokens(400), 100);
	ck_assert_int_eq(gem_estimate_tokens(401), 101);
}
END_TEST

Suite *
inspect_suite(void)
{
	Suite	*s = suite_create("inspect");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, t_model_from_path);
	tcase_add_test(tc, t_model_from_body);
	tcase_add_test(tc, t_estimate);
	suite_add_tcase(s, tc);
	return s;
}
