// The official openai Node SDK against gpt2onnx serve: `node openai_node.mjs CALL`.
// GPT2ONNX_BASE_URL (http://HOST:PORT/v1) and GPT2ONNX_MODEL say where and what;
// CALL is completion, completion-stream, chat or chat-stream.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GPT2ONNX_BASE_URL, apiKey: "unused" });
const model = process.env.GPT2ONNX_MODEL;
const messages = [{ role: "user", content: "Tell me a fortune." }];

async function collect(stream, piece) {
  const parts = [];
  for await (const chunk of stream) if (chunk.choices?.length) parts.push(piece(chunk.choices[0]) ?? "");
  console.log(parts.join(""), `\n(${parts.length} chunks)`);
}

const calls = {
  completion: async () => {
    const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 20 });
    console.log(r.choices[0].text);
  },
  "completion-stream": async () =>
    collect(await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 20, stream: true }), (c) => c.text),
  chat: async () => {
    const r = await client.chat.completions.create({ model, messages, max_tokens: 20 });
    console.log(r.choices[0].message.content);
  },
  "chat-stream": async () =>
    collect(await client.chat.completions.create({ model, messages, max_tokens: 20, stream: true }), (c) => c.delta.content),
};

await calls[process.argv[2]]();
