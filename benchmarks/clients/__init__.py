"""Real OpenAI clients against `gpt2onnx serve`: a recorded run of each one's plain and streamed calls.

    python -m benchmarks.clients --out docs/clients.md [--only openai_python,guidance] [--server-rev HEAD]

The run starts `gpt2onnx serve` (this repository's .venv, the shipped model; the work tree's code,
or a commit's with --server-rev) on a free loopback port, puts a logging reverse proxy in front of
it, runs each client's calls as subprocesses against the proxy, stops the server and writes the
report (--out) and every request and answer (.cache/STEM-log.json).

A call passes when its program exits 0 and the server answered each of its requests below 400.

The package:
- __main__.py: the options and the run;
- envs.py: the pinned client versions and their environments, .cache/clients-venv (a virtual
  environment made with this interpreter's venv module) and .cache/clients-node (npm's openai),
  both reused while their pins match;
- calls.py: one function per client (openai_python, openai_node, langchain_openai, litellm,
  llm_cli, guidance) that says what it runs: the calls, as commands in the client's environment;
- programs/: the client programs those commands run, one per client, `PROGRAM CALL`;
- proxy.py: LoggingProxy, which keeps every request body the clients send and every answer;
- server.py: `gpt2onnx serve` started and stopped, on the work tree's code or a commit's;
- report.py: the report: date, CPU, versions, a pass/fail table, each client's code and output,
  the request and the server's error of each failure, and every request shape each client sent.
"""
