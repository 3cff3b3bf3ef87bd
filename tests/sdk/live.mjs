// The Live API as users open it: @google/genai's ai.live.connect() with
// httpOptions.baseUrl pointed at BASE (the stand-in, or the proxy), the
// API key KEY, model MODEL.  Runs CASES (JSON list of names): "text" (one
// text turn), "tool" (a declared function called, its response sent,
// the answer), "resume" (sessionResumption: the handle of the first
// session opens a second).  Prints one JSON object: per case what came
// back (texts, usageMetadata, toolCall, handle, close code and reason) or
// its error.
import { GoogleGenAI, Modality } from "@google/genai";

const ai = new GoogleGenAI({ apiKey: process.env.KEY,
    httpOptions: { baseUrl: process.env.BASE } });
const model = process.env.MODEL;
const cases = JSON.parse(process.env.CASES || '["text", "tool", "resume"]');
const out = {};

// One session: resolves when wanted(messages) says it has seen enough, or
// the socket closes, or 20 s pass.
function open(config, act, wanted) {
    return new Promise(async (resolve) => {
        const got = { messages: [], texts: [], usage: [], close: null };
        let session = null;
        let done = false;
        const finish = () => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            try { session && session.close(); } catch (e) { /* closed */ }
            resolve(got);
        };
        const timer = setTimeout(() => { got.timeout = true; finish(); }, 20000);
        try {
            session = await ai.live.connect({ model, config, callbacks: {
                onmessage: (m) => {
                    got.messages.push(Object.keys(m).filter((k) => m[k] !== undefined));
                    for (const p of m.serverContent?.modelTurn?.parts || [])
                        if (p.text) got.texts.push(p.text);
                    if (m.usageMetadata) got.usage.push(m.usageMetadata);
                    if (m.toolCall) {
                        got.toolCall = m.toolCall;
                        session.sendToolResponse({ functionResponses:
                            m.toolCall.functionCalls.map((fc) => ({ id: fc.id,
                                name: fc.name, response: { sky: "clear" } })) });
                    }
                    if (m.sessionResumptionUpdate?.newHandle)
                        got.handle = m.sessionResumptionUpdate.newHandle;
                    if (wanted(got, m)) finish();
                },
                onerror: (e) => { got.error = String(e?.message || e); },
                onclose: (e) => { got.close = { code: e.code, reason: e.reason }; finish(); },
            } });
            got.connected = true;
            act(session);
        } catch (e) {
            got.error = String(e?.message || e).slice(0, 300);
            finish();
        }
    });
}

const turnDone = (got, m) => m.serverContent?.turnComplete === true;

for (const name of cases) {
    if (name === "text") {
        out.text = await open({ responseModalities: [Modality.TEXT],
            systemInstruction: "Be brief." },
            (s) => s.sendClientContent({ turns: "Hello from the SDK.", turnComplete: true }),
            turnDone);
    } else if (name === "tool") {
        out.tool = await open({ responseModalities: [Modality.TEXT],
            tools: [{ functionDeclarations: [{ name: "get_weather",
                description: "The weather in a city.",
                parameters: { type: "OBJECT", properties: { city: { type: "STRING" } } } }] }] },
            (s) => s.sendClientContent({ turns: "Please call get_weather for Paris.",
                turnComplete: true }),
            turnDone);
    } else if (name === "resume") {
        const first = await open({ responseModalities: [Modality.TEXT],
            sessionResumption: {} },
            (s) => s.sendClientContent({ turns: "Remember this.", turnComplete: true }),
            (got) => !!got.handle);
        const second = await open({ responseModalities: [Modality.TEXT],
            sessionResumption: { handle: first.handle } },
            (s) => s.sendClientContent({ turns: "Go on.", turnComplete: true }),
            turnDone);
        out.resume = { first, second };
    } else if (name === "refused") {
        out.refused = await open({ responseModalities: [Modality.TEXT] },
            (s) => s.sendClientContent({ turns: "hi", turnComplete: true }), turnDone);
    }
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(0);
