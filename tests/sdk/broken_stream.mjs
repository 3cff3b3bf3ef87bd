// Answers broken off mid-way, seen through @google/genai the way users
// see them (issue 12, honest streams).  PROXY: the proxy's base URL;
// CASES: a JSON object, name -> {prompt, stream}.  Prints one JSON object:
// per case the chunks that arrived and how the call ended, "clean" or the
// error the SDK raised.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({ apiKey: "unused-by-the-proxy",
    httpOptions: { baseUrl: process.env.PROXY } });
const model = process.env.MODEL;
const out = {};

for (const [name, c] of Object.entries(JSON.parse(process.env.CASES))) {
    const r = { chunks: 0, text: "" };
    try {
        if (c.stream) {
            const s = await ai.models.generateContentStream({ model,
                contents: c.prompt });
            for await (const chunk of s) {
                r.chunks++;
                r.text += chunk.text ?? "";
            }
        } else {
            r.text = (await ai.models.generateContent({ model,
                contents: c.prompt })).text;
            r.chunks = 1;
        }
        r.end = "clean";
    } catch (e) {
        const cause = e && e.cause ? " (cause: " + String(e.cause.message ||
            e.cause.code || e.cause) + ")" : "";
        r.end = "error";
        r.error = (String(e && e.message || e) + cause).slice(0, 300);
    }
    out[name] = r;
}
console.log(JSON.stringify(out));
