/*
 * Unit tests of Gemini's wire: classify.c against error bodies shaped like
 * the ones captured in public issue threads (keys replaced by fakes),
 * usagescan.c in every framing and at every split point, and inspect.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "check_fixtures.h"
#include "check_suites.h"
#include "classify.h"
#include "config.h"
#include "inspect.h"
#include "shm.h"
#include "usagescan.h"

/* Fakes of the right shapes; none of them was ever a key. */
#define K1	FIX_KEY
#define K2	"AIzaSyB_other-key_0123456789ABCDEFGHIJK"

static void
classify(int status, const char *body, struct gem_verdict *v)
{
	gem_classify(status, body, body == NULL ? 0 : strlen(body), v);
	ck_assert_ptr_null(strstr(v->why, "AIzaSy"));
}

/*
 * 429s.
 */

/* Free tier, requests per minute (gemini-cli's test fixture shape). */
static const char b429_rpm[] =
"{\n"
"  \"error\": {\n"
"    \"code\": 429,\n"
"    \"message\": \"You exceeded your current quota, please check your plan "
"and billing details. For more information on this error, head to: "
"https://ai.google.dev/gemini-api/docs/rate-limits.\\n* Quota exceeded for "
"metric: generativelanguage.googleapis.com/generate_content_free_tier_requests"
", limit: 2\\nPlease retry in 56.185908122s.\",\n"
"    \"status\": \"RESOURCE_EXHAUSTED\",\n"
"    \"details\": [\n"
"      {\n"
"        \"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\",\n"
"        \"violations\": [\n"
"          {\n"
"            \"quotaMetric\": \"generativelanguage.googleapis.com/"
"generate_content_free_tier_requests\",\n"
"            \"quotaId\": \"GenerateRequestsPerMinutePerProjectPerModel-"
"FreeTier\",\n"
"            \"quotaDimensions\": {\"location\": \"global\", "
"\"model\": \"gemini-2.5-pro\"},\n"
"            \"quotaValue\": \"2\"\n"
"          }\n"
"        ]\n"
"      },\n"
"      {\n"
"        \"@type\": \"type.googleapis.com/google.rpc.Help\",\n"
"        \"links\": [{\"description\": \"Learn more about Gemini API "
"quotas\", \"url\": \"https://ai.google.dev/gemini-api/docs/rate-limits\"}]\n"
"      },\n"
"      {\n"
"        \"@type\": \"type.googleapis.com/google.rpc.RetryInfo\",\n"
"        \"retryDelay\": \"56s\"\n"
"      }\n"
"    ]\n"
"  }\n"
"}\n";

/* Free tier, input tokens per minute (RooCode #3883 shape). */
static const char b429_tpm_free[] =
"{\"error\": {\"code\": 429, \"message\": \"You exceeded your current quota,"
" please check your plan and billing details.\\n* Quota exceeded for metric:"
" generativelanguage.googleapis.com/generate_content_free_tier_input_token_"
"count, limit: 250000, model: gemini-2.5-flash\\nPlease retry in 35.59s.\","
" \"status\": \"RESOURCE_EXHAUSTED\", \"details\": ["
"{\"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\", \"violations\":"
" [{\"quotaMetric\": \"generativelanguage.googleapis.com/generate_content_"
"free_tier_input_token_count\", \"quotaId\": \"GenerateContentInputTokens"
"PerModelPerMinute-FreeTier\", \"quotaDimensions\": {\"location\": "
"\"global\", \"model\": \"gemini-2.5-flash\"}, \"quotaValue\": \"250000\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.Help\", \"links\": "
"[{\"description\": \"Learn more\", \"url\": \"https://ai.google.dev/\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", "
"\"retryDelay\": \"35s\"}]}}";

/* Paid tier, input tokens per minute, fractional retryDelay. */
static const char b429_tpm_paid[] =
"{\"error\": {\"code\": 429, \"message\": \"You exceeded your current quota."
"\", \"status\": \"RESOURCE_EXHAUSTED\", \"details\": ["
"{\"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\", \"violations\":"
" [{\"quotaMetric\": \"generativelanguage.googleapis.com/generate_content_"
"paid_tier_input_token_count\", \"quotaId\": \"GenerateContentPaidTierInput"
"TokensPerModelPerMinute\", \"quotaDimensions\": {\"location\": \"global\","
" \"model\": \"gemini-2.5-pro\"}, \"quotaValue\": \"2000000\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", "
"\"retryDelay\": \"34.074824224s\"}]}}";

/* Per day, several violations, short retryDelay (python-genai #2044). */
static const char b429_rpd[] =
"{\"error\": {\"code\": 429, \"message\": \"You exceeded your current quota."
"\", \"status\": \"RESOURCE_EXHAUSTED\", \"details\": ["
"{\"@type\": \"type.googleapis.com/google.rpc.Help\", \"links\": "
"[{\"description\": \"Learn more about Gemini API quotas\", \"url\": "
"\"https://ai.google.dev/gemini-api/docs/rate-limits\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\", "
"\"violations\": ["
"{\"quotaMetric\": \"generativelanguage.googleapis.com/generate_content_free_"
"tier_requests\", \"quotaId\": \"GenerateRequestsPerMinutePerProjectPer"
"Model-FreeTier\", \"quotaDimensions\": {\"location\": \"global\", "
"\"model\": \"gemini-2.0-flash\"}},"
"{\"quotaMetric\": \"generativelanguage.googleapis.com/generate_content_free_"
"tier_requests\", \"quotaId\": \"GenerateRequestsPerDayPerProjectPerModel-"
"FreeTier\", \"quotaDimensions\": {\"location\": \"global\", "
"\"model\": \"gemini-2.0-flash\"}, \"quotaValue\": \"200\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", "
"\"retryDelay\": \"47s\"}]}}";

/* Input tokens per day. */
static const char b429_tpd[] =
"{\"error\": {\"code\": 429, \"message\": \"quota\", \"status\": "
"\"RESOURCE_EXHAUSTED\", \"details\": [{\"@type\": \"type.googleapis.com/"
"google.rpc.QuotaFailure\", \"violations\": [{\"quotaId\": \"GenerateContent"
"InputTokensPerModelPerDay-FreeTier\", \"quotaValue\": \"6000000\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", "
"\"retryDelay\": \"12s\"}]}}";

/* Two per-minute violations, tokens first. */
static const char b429_multi[] =
"{\"error\": {\"code\": 429, \"message\": \"quota\", \"status\": "
"\"RESOURCE_EXHAUSTED\", \"details\": [{\"@type\": \"type.googleapis.com/"
"google.rpc.QuotaFailure\", \"violations\": ["
"{\"quotaId\": \"GenerateContentInputTokensPerModelPerMinute-FreeTier\","
" \"quotaValue\": \"250000\"},"
"{\"quotaId\": \"GenerateRequestsPerMinutePerProjectPerModel-FreeTier\","
" \"quotaValue\": \"10\"}]},"
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", "
"\"retryDelay\": \"9s\"}]}}";

/* A DebugInfo first, then a per-minute violation, no RetryInfo. */
static const char b429_debug[] =
"{\"error\": {\"code\": 429, \"message\": \"Resource exhausted.\", "
"\"status\": \"RESOURCE_EXHAUSTED\", \"details\": ["
"{\"@type\": \"type.googleapis.com/google.rpc.DebugInfo\", \"detail\": "
"\"[ORIGINAL ERROR] generic::resource_exhausted: quota\", "
"\"stackEntries\": [\"a\", \"b\"]},"
"{\"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\", \"violations\":"
" [{\"quotaMetric\": \"generativelanguage.googleapis.com/generate_content_"
"requests\", \"quotaId\": \"GenerateRequestsPerMinutePerProjectPerModel\","
" \"quotaValue\": \"1000\"}]}]}}";

/* No details, the delay only in the message. */
static const char b429_msg_ms[] =
"{\"error\": {\"code\": 429, \"message\": \"You exceeded your current quota."
"\\n* Quota exceeded for metric: generativelanguage.googleapis.com/"
"generate_content_free_tier_requests, limit: 2\\nPlease retry in 900ms.\", "
"\"status\": \"RESOURCE_EXHAUSTED\"}}";

/* Nothing to go on (python-genai #2065). */
static const char b429_bare[] =
"{\"error\": {\"code\": 429, \"message\": \"Resource has been exhausted "
"(e.g. check quota).\", \"status\": \"RESOURCE_EXHAUSTED\"}}";

/* Only a Help link (python-genai #1427). */
static const char b429_help[] =
"{\"error\": {\"code\": 429, \"message\": \"You exceeded your current "
"quota, please check your plan and billing details.\", \"status\": "
"\"RESOURCE_EXHAUSTED\", \"details\": [{\"@type\": \"type.googleapis.com/"
"google.rpc.Help\", \"links\": [{\"description\": \"Learn more about "
"Gemini API quotas\", \"url\": \"https://ai.google.dev/gemini-api/docs/"
"rate-limits\"}]}]}}";

/* The OpenAI-compatible path wraps the error in an array. */
static const char b429_openai[] =
"[{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"You exceeded your "
"current quota.\",\n    \"status\": \"RESOURCE_EXHAUSTED\",\n    \"details\": "
"[\n      {\n        \"@type\": \"type.googleapis.com/google.rpc.QuotaFailure"
"\",\n        \"violations\": [{\"quotaId\": \"GenerateContentInputTokensPer"
"ModelPerMinute-FreeTier\", \"quotaValue\": \"250000\"}]\n      },\n      {\n"
"        \"@type\": \"type.googleapis.com/google.rpc.RetryInfo\",\n"
"        \"retryDelay\": \"20s\"\n      }\n    ]\n  }\n}\n]\n";

/* The model has no quota on this tier at all (continue #10066 shape). */
static const char b429_limit0[] =
"{\"error\": {\"code\": 429, \"message\": \"You exceeded your current quota."
"\\n* Quota exceeded for metric: generativelanguage.googleapis.com/"
"generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro\\n"
"Please retry in 7.967587226s.\", \"status\": \"RESOURCE_EXHAUSTED\", "
"\"details\": [{\"@type\": \"type.googleapis.com/google.rpc.QuotaFailure\","
" \"violations\": [{\"quotaId\": \"GenerateRequestsPerMinutePerProjectPer"
"Model-FreeTier\", \"quotaValue\": \"0\"}]}, {\"@type\": \"type.googleapis."
"com/google.rpc.RetryInfo\", \"retryDelay\": \"7s\"}]}}";

/* RetryInfo in the Duration object form. */
static const char b429_duration_obj[] =
"{\"error\": {\"code\": 429, \"message\": \"quota\", \"details\": ["
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", \"retryDelay\": "
"{\"seconds\": \"12\", \"nanos\": 500000000}}]}}";

static const char b429_15s[] =
"{\"error\": {\"code\": 429, \"message\": \"quota\", \"details\": ["
"{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", "
"\"retryDelay\": \"1.5s\"}]}}";

START_TEST(t_429_per_minute)
{
	struct gem_verdict	 v;

	classify(429, b429_rpm, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_RPM);
	ck_assert_int_eq(v.delay_ms, 56000);	/* RetryInfo beats message */
	ck_assert_ptr_nonnull(strstr(v.why, "GenerateRequestsPerMinute"));

	classify(429, b429_tpm_free, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_TPM);
	ck_assert_int_eq(v.delay_ms, 35000);

	classify(429, b429_tpm_paid, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_TPM);
	ck_assert_int_eq(v.delay_ms, 34075);

	classify(429, b429_multi, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_TPM);
	ck_assert_int_eq(v.delay_ms, 9000);

	classify(429, b429_debug, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_RPM);
	ck_assert_int_eq(v.delay_ms, GEM_COOL_DEFAULT_MS);

	classify(429, b429_openai, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_TPM);
	ck_assert_int_eq(v.delay_ms, 20000);

	classify(429, b429_duration_obj, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_429);
	ck_assert_int_eq(v.delay_ms, 12500);

	classify(429, b429_15s, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.delay_ms, 1500);
}
END_TEST

START_TEST(t_429_per_day)
{
	struct gem_verdict	 v;

	/* A 47 s retryDelay, but the per-day quota is what ran out. */
	classify(429, b429_rpd, &v);
	ck_assert_int_eq(v.action, GEM_EXHAUST);
	ck_assert_int_eq(v.reason, SHM_R_RPD);
	ck_assert_ptr_nonnull(strstr(v.why, "PerDay"));

	classify(429, b429_tpd, &v);
	ck_assert_int_eq(v.action, GEM_EXHAUST);
	ck_assert_int_eq(v.reason, SHM_R_TPD);

	classify(429, b429_limit0, &v);
	ck_assert_int_eq(v.action, GEM_EXHAUST);
	ck_assert_int_eq(v.reason, SHM_R_RPM);
	ck_assert_ptr_nonnull(strstr(v.why, "limit 0"));
}
END_TEST

START_TEST(t_429_fallbacks)
{
	struct gem_verdict	 v;
	char			 cut[sizeof(b429_rpd)];
	const char		*p;

	classify(429, b429_msg_ms, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_429);
	ck_assert_int_eq(v.delay_ms, 900);

	classify(429, b429_bare, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_429);
	ck_assert_int_eq(v.delay_ms, GEM_COOL_DEFAULT_MS);

	classify(429, b429_help, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.delay_ms, GEM_COOL_DEFAULT_MS);

	classify(429, "<html><body>Too Many Requests</body></html>", &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_429);
	ck_assert_int_eq(v.delay_ms, GEM_COOL_DEFAULT_MS);

	classify(429, NULL, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.delay_ms, GEM_COOL_DEFAULT_MS);

	classify(429, "", &v);
	ck_assert_int_eq(v.action, GEM_COOL);

	/* Cut short after the per-day quotaId: still a per-day 429. */
	p = strstr(b429_rpd, "PerDayPerProjectPerModel-FreeTier\"");
	ck_assert_ptr_nonnull(p);
	memcpy(cut, b429_rpd, sizeof(cut));
	gem_classify(429, cut, (size_t)(p - b429_rpd) + 40, &v);
	ck_assert_int_eq(v.action, GEM_EXHAUST);
	ck_assert_int_eq(v.reason, SHM_R_RPD);

	/* Cut short before the per-day violation: the per-minute one. */
	gem_classify(429, cut, (size_t)(p - b429_rpd) - 60, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.reason, SHM_R_RPM);
	ck_assert_int_eq(v.delay_ms, GEM_COOL_DEFAULT_MS);

	/* Cut short, the delay only in the message. */
	gem_classify(429, b429_msg_ms, sizeof(b429_msg_ms) - 20, &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.delay_ms, 900);
}
END_TEST

/*
 * 400, 403, 5xx.
 */

/* continue #8516: the OpenAI-compatible path, array-wrapped. */
static const char b400_invalid[] =
"[{\n  \"error\": {\n    \"code\": 400,\n    \"message\": \"API key not valid."
" Please pass a valid API key.\",\n    \"status\": \"INVALID_ARGUMENT\",\n"
"    \"details\": [\n      {\n        \"@type\": \"type.googleapis.com/"
"google.rpc.ErrorInfo\",\n        \"reason\": \"API_KEY_INVALID\",\n"
"        \"domain\": \"googleapis.com\",\n        \"metadata\": {\n"
"          \"service\": \"generativelanguage.googleapis.com\"\n        }\n"
"      },\n      {\n        \"@type\": \"type.googleapis.com/google.rpc."
"LocalizedMessage\",\n        \"locale\": \"en-US\",\n        \"message\": "
"\"API key not valid. Please pass a valid API key.\"\n      }\n    ]\n  }\n"
"}\n]\n";

/* gemini-cli #25198: "not found", message only matters here. */
static const char b400_notfound[] =
"{\"error\":{\"code\":400,\"message\":\"API Key not found. Please pass a "
"valid API key.\",\"status\":\"INVALID_ARGUMENT\"}}";

static const char b400_other[] =
"{\"error\": {\"code\": 400, \"message\": \"Invalid JSON payload received. "
"Unknown name \\\"contentz\\\": Cannot find field.\", \"status\": "
"\"INVALID_ARGUMENT\", \"details\": [{\"@type\": \"type.googleapis.com/"
"google.rpc.BadRequest\", \"fieldViolations\": [{\"description\": \"x\"}]}]}}";

/* continue #10513. */
static const char b403_leaked[] =
"{\n  \"error\": {\n    \"code\": 403,\n    \"message\": \"Your API key was "
"reported as leaked. Please use another API key.\",\n    \"status\": "
"\"PERMISSION_DENIED\"\n  }\n}\n";

/* continue #12781. */
static const char b403_blocked[] =
"{\"error\": {\"code\": 403, \"message\": \"Requests to this API "
"generativelanguage.googleapis.com method google.ai.generativelanguage."
"v1beta.GenerativeService.StreamGenerateContent are blocked.\", \"status\": "
"\"PERMISSION_DENIED\", \"details\": [{\"@type\": \"type.googleapis.com/"
"google.rpc.ErrorInfo\", \"reason\": \"API_KEY_SERVICE_BLOCKED\", \"domain\":"
" \"googleapis.com\", \"metadata\": {\"consumer\": \"projects/1\", "
"\"service\": \"generativelanguage.googleapis.com\"}}]}}";

static const char b403_file[] =
"{\"error\": {\"code\": 403, \"message\": \"You do not have permission to "
"access the File abc123 or it may not exist.\", \"status\": "
"\"PERMISSION_DENIED\"}}";

static const char b403_denied[] =
"{\"error\": {\"code\": 403, \"message\": \"Your project has been denied "
"access. Please contact support.\", \"status\": \"PERMISSION_DENIED\"}}";

/* Another API of the project disabled: not this key's problem. */
static const char b403_other_service[] =
"{\"error\": {\"code\": 403, \"message\": \"Cloud Storage API has not been "
"used in project 1 before or it is disabled.\", \"status\": "
"\"PERMISSION_DENIED\", \"details\": [{\"@type\": \"type.googleapis.com/"
"google.rpc.ErrorInfo\", \"reason\": \"SERVICE_DISABLED\", \"metadata\": "
"{\"service\": \"storage.googleapis.com\"}}]}}";

static const char b503[] =
"{\n  \"error\": {\n    \"code\": 503,\n    \"message\": \"The model is "
"overloaded. Please try again later.\",\n    \"status\": \"UNAVAILABLE\"\n"
"  }\n}\n";

START_TEST(t_invalid_key)
{
	struct gem_verdict	 v;

	classify(400, b400_invalid, &v);
	ck_assert_int_eq(v.action, GEM_INVALID);
	ck_assert_int_eq(v.reason, SHM_R_INVALID);
	ck_assert_str_eq(v.why, "API_KEY_INVALID");

	classify(400, b400_notfound, &v);
	ck_assert_int_eq(v.action, GEM_INVALID);
	ck_assert_int_eq(v.reason, SHM_R_INVALID);

	classify(403, fix_b403_suspended, &v);
	ck_assert_int_eq(v.action, GEM_INVALID);
	ck_assert_int_eq(v.reason, SHM_R_INVALID);
	ck_assert_str_eq(v.why, "CONSUMER_SUSPENDED");
	ck_assert_ptr_null(strstr(v.why, K1));

	classify(403, b403_leaked, &v);
	ck_assert_int_eq(v.action, GEM_INVALID);
	ck_assert_str_eq(v.why, "key reported as leaked");

	classify(403, b403_blocked, &v);
	ck_assert_int_eq(v.action, GEM_INVALID);
	ck_assert_str_eq(v.why, "API_KEY_SERVICE_BLOCKED");

	/* Truncated suspension: the raw text still tells. */
	gem_classify(403, fix_b403_suspended, (size_t)(strstr(fix_b403_suspended,
	    "suspended.") - fix_b403_suspended) + 10, &v);
	ck_assert_int_eq(v.action, GEM_INVALID);
	ck_assert_ptr_null(strstr(v.why, "AIza"));
}
END_TEST

START_TEST(t_pass_and_retry)
{
	struct gem_verdict	 v;

	classify(400, b400_other, &v);
	ck_assert_int_eq(v.action, GEM_PASS);
	ck_assert_int_eq(v.reason, SHM_R_NONE);

	classify(400, "not json at all", &v);
	ck_assert_int_eq(v.action, GEM_PASS);

	classify(403, b403_file, &v);
	ck_assert_int_eq(v.action, GEM_PASS);
	ck_assert_str_eq(v.why, "upstream 403 PERMISSION_DENIED");

	classify(403, b403_denied, &v);
	ck_assert_int_eq(v.action, GEM_PASS);

	classify(403, b403_other_service, &v);
	ck_assert_int_eq(v.action, GEM_PASS);

	classify(403, "<html>Forbidden</html>", &v);
	ck_assert_int_eq(v.action, GEM_PASS);

	classify(404, "{\"error\": {\"code\": 404, \"message\": \"models/x is "
	    "not found\", \"status\": \"NOT_FOUND\"}}", &v);
	ck_assert_int_eq(v.action, GEM_PASS);

	classify(413, "", &v);
	ck_assert_int_eq(v.action, GEM_PASS);

	classify(503, b503, &v);
	ck_assert_int_eq(v.action, GEM_RETRY);
	ck_assert_int_eq(v.reason, SHM_R_NONE);
	ck_assert_str_eq(v.why, "upstream 503 UNAVAILABLE");

	classify(500, "{\"error\": {\"code\": 500, \"message\": \"An internal "
	    "error has occurred.\", \"status\": \"INTERNAL\"}}", &v);
	ck_assert_int_eq(v.action, GEM_RETRY);
	classify(502, "bad gateway", &v);
	ck_assert_int_eq(v.action, GEM_RETRY);
	classify(504, NULL, &v);
	ck_assert_int_eq(v.action, GEM_RETRY);

	ck_assert_str_eq(gem_action_name(GEM_EXHAUST), "exhaust");
}
END_TEST

/*
 * Identifiers that hold a key: glued to other characters it is not
 * key-shaped, and cut short by the field's size neither, so the scrubber
 * alone missed it (found by tests/fuzz/fuzz_classify.c).
 */
START_TEST(t_id_with_key)
{
	struct gem_verdict	 v;

	/* The fuzzer's input, minimised: a raw quotaId, a key glued in. */
	classify(429, "\"quotaId\":\"AIzaSyDUmmy012Daily89abcefghiLMely"
	    "Delays\"", &v);
	ck_assert_ptr_null(strstr(v.why, "DUmmy"));

	classify(429, "{\"error\": {\"code\": 429, \"details\": ["
	    "{\"violations\": [{\"quotaId\": \"GenerateContentInputTokens"
	    "PerMod" K1 "elPerMinute-FreeTier\"}]}, {\"retryDelay\": "
	    "\"9s\"}]}}", &v);
	ck_assert_int_eq(v.action, GEM_COOL);
	ck_assert_int_eq(v.delay_ms, 9000);
	ck_assert_str_eq(v.why,
	    "retryDelay GenerateContentInputTokensPerMod...");

	/* A status is cut at 31 characters: most of a key, not its shape. */
	classify(400, "{\"error\": {\"code\": 400, \"status\": \"" K1
	    "\"}}", &v);
	ck_assert_int_eq(v.action, GEM_PASS);
	ck_assert_str_eq(v.why, "upstream 400 ...");
	classify(400, "{\"error\": {\"code\": 400, \"status\": \"X" K2
	    "\"}}", &v);
	ck_assert_str_eq(v.why, "upstream 400 X...");
}
END_TEST

START_TEST(t_retry_delay_parse)
{
	static const struct {
		const char	*s;
		int		 rc;
		int64_t		 ms;
	} t[] = {
		{ "40s", 0, 40000 },
		{ "34.07s", 0, 34070 },
		{ "900ms", 0, 900 },
		{ "1.5s", 0, 1500 },
		{ "0.539477544s", 0, 540 },
		{ "900.2ms", 0, 901 },
		{ "51820.638305887s", 0, 51820639 },
		{ " 3s ", 0, 3000 },
		{ ".5s", 0, 500 },
		{ "0s", 0, 0 },
		{ "", -1, 0 },
		{ "s", -1, 0 },
		{ "40", -1, 0 },
		{ "40m", -1, 0 },
		{ "40sx", -1, 0 },
		{ "-1s", -1, 0 },
		{ "1e3s", -1, 0 },
		{ "99999999999999999999s", -1, 0 },
	};
	size_t	 i;
	int64_t	 ms;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ms = -7;
		ck_assert_msg(gem_retry_delay_parse(t[i].s, &ms) == t[i].rc,
		    "rc for \"%s\"", t[i].s);
		if (t[i].rc == 0)
			ck_assert_msg(ms == t[i].ms, "\"%s\" gave %lld", t[i].s,
			    (long long)ms);
	}
	ck_assert_int_eq(gem_retry_delay_parse(NULL, &ms), -1);
}
END_TEST

/*
 * The usage scanner.
 */
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

/*
 * Request inspection.
 */
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
gemini_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("gemini");

	tc = tcase_create("classify");
	tcase_add_test(tc, t_429_per_minute);
	tcase_add_test(tc, t_429_per_day);
	tcase_add_test(tc, t_429_fallbacks);
	tcase_add_test(tc, t_invalid_key);
	tcase_add_test(tc, t_pass_and_retry);
	tcase_add_test(tc, t_id_with_key);
	tcase_add_test(tc, t_retry_delay_parse);
	suite_add_tcase(s, tc);

	tc = tcase_create("scan");
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

	tc = tcase_create("request");
	tcase_add_test(tc, t_model_from_path);
	tcase_add_test(tc, t_model_from_body);
	tcase_add_test(tc, t_estimate);
	suite_add_tcase(s, tc);

	return s;
}
