// The calls that cost no quota, made the way users make them: through
// @google/genai and the OpenAI SDK pointed at the proxy (PROXY, its base
// URL).  Prints one JSON object: what each call returned, or its error.
import { GoogleGenAI } from "@google/genai";
import OpenAI from "openai";

const base = process.env.PROXY;
const ai = new GoogleGenAI({ apiKey: "unused-by-the-proxy",
    httpOptions: { baseUrl: base } });
const oa = new OpenAI({ apiKey: "unused-by-the-proxy",
    baseURL: base + "/v1beta/openai/" });
const out = {};

async function step(name, fn) {
    try {
        out[name] = { ok: await fn() };
    } catch (e) {
        out[name] = { error: String(e && e.message || e).slice(0, 300),
            status: e && e.status };
    }
}

await step("models.list", async () => {
    const names = [];
    for await (const m of await ai.models.list()) names.push(m.name);
    return names;
});
await step("models.get", async () =>
    (await ai.models.get({ model: process.env.MODEL })).name);
await step("files.upload", async () =>
    (await ai.files.upload({ file: new Blob(["hello from the sdk\n"]),
        config: { mimeType: "text/plain", displayName: "sdk" } })).name);
await step("files.list", async () => {
    const names = [];
    for await (const f of await ai.files.list()) names.push(f.name);
    return names;
});
await step("countTokens", async () =>
    (await ai.models.countTokens({ model: process.env.MODEL,
        contents: "how many tokens is this" })).totalTokens);
await step("openai.models.list", async () => {
    const ids = [];
    for await (const m of oa.models.list()) ids.push(m.id);
    return ids;
});
await step("generateContent", async () =>
    (await ai.models.generateContent({ model: process.env.MODEL,
        contents: "hello" })).text);
console.log(JSON.stringify(out));
