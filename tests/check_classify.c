/*
 * classify.c against error bodies shaped like the ones captured in public
 * issue threads (keys replaced by fakes): what each answer means for its
 * key, how long to wait, and that no key reaches a log line.
 */
#include <string.h>

#include <check.h>

#include "check_fixtures.h"
#include "check_suites.h"
#include "classify.h"
#include "shm.h"

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

/* What a 429 names, for the storm check: its quotas' values, its delay. */
START_TEST(t_429_named)
{
	struct gem_verdict	 v;
	char			 cut[sizeof(b429_multi)];
	const char		*p;

	classify(429, b429_tpm_free, &v);
	ck_assert_uint_eq(v.nnamed, 1);
	ck_assert_uint_eq(v.named_kind[0], SHM_R_TPM);
	ck_assert_int_eq(v.named_value[0], 250000);
	ck_assert_int_eq(v.retry_ms, 35000);

	classify(429, b429_rpd, &v);
	ck_assert_uint_eq(v.nnamed, 2);
	ck_assert_uint_eq(v.named_kind[0], SHM_R_RPM);
	ck_assert_int_eq(v.named_value[0], -1);	/* no quotaValue */
	ck_assert_uint_eq(v.named_kind[1], SHM_R_RPD);
	ck_assert_int_eq(v.named_value[1], 200);
	ck_assert_int_eq(v.retry_ms, 47000);

	classify(429, b429_limit0, &v);
	ck_assert_uint_eq(v.nnamed, 1);
	ck_assert_int_eq(v.named_value[0], 0);

	/* Bare: names nothing, asks nothing (the cool-down is ours). */
	classify(429, b429_bare, &v);
	ck_assert_uint_eq(v.nnamed, 0);
	ck_assert_int_eq(v.retry_ms, -1);
	classify(429, b429_msg_ms, &v);
	ck_assert_uint_eq(v.nnamed, 0);
	ck_assert_int_eq(v.retry_ms, 900);

	/* Cut short: the values are read from the text. */
	p = strstr(b429_multi, "RetryInfo");
	ck_assert_ptr_nonnull(p);
	memcpy(cut, b429_multi, (size_t)(p - b429_multi));
	gem_classify(429, cut, (size_t)(p - b429_multi), &v);
	ck_assert_uint_eq(v.nnamed, 2);
	ck_assert_uint_eq(v.named_kind[0], SHM_R_TPM);
	ck_assert_int_eq(v.named_value[0], 250000);
	ck_assert_uint_eq(v.named_kind[1], SHM_R_RPM);
	ck_assert_int_eq(v.named_value[1], 10);

	/* Not a 429: nothing named. */
	classify(503, b429_tpm_free, &v);
	ck_assert_uint_eq(v.nnamed, 0);
}
END_TEST

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

Suite *
classify_suite(void)
{
	Suite	*s = suite_create("classify");
	TCase	*tc = tcase_create("core");

	tcase_add_test(tc, t_429_per_minute);
	tcase_add_test(tc, t_429_named);
	tcase_add_test(tc, t_429_per_day);
	tcase_add_test(tc, t_429_fallbacks);
	tcase_add_test(tc, t_invalid_key);
	tcase_add_test(tc, t_pass_and_retry);
	tcase_add_test(tc, t_id_with_key);
	tcase_add_test(tc, t_retry_delay_parse);
	suite_add_tcase(s, tc);
	return s;
}
