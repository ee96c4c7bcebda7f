"""What each client runs: one function per client that turns the run's Setup into a Client, its
calls as commands in the client's own environment and the code the report shows. CLIENTS lists
them in run and report order; --only names them."""

from __future__ import annotations

from dataclasses import dataclass, field

from .envs import LLM_HOME, NODE, PROGRAMS, REPO, VENV

MODEL = "gpt2onnx-default"


@dataclass
class Call:
    name: str  # what the client program calls it
    argv: list[str]
    streamed: bool


@dataclass
class Client:
    name: str
    versions: str  # as the report shows them
    calls: list[Call]
    code: list[tuple[str, str, str]]  # (title, fence language, text): what it ran, for the report
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Setup:
    base_url: str  # the proxy's http://127.0.0.1:PORT/v1
    python: dict[str, str]  # envs.python_env()
    node: dict[str, str]  # envs.node_env(), or {} when the Node client is not run


STANDARD_CALLS = (("completion", False), ("completion-stream", True), ("chat", False), ("chat-stream", True))


def _program(name: str, file: str, versions: str, calls, env: dict | None = None) -> Client:
    """A client program of programs/ run once per call as `PROGRAM CALL` (Python's in
    .cache/clients-venv, Node's from .cache/clients-node)."""
    node = file.endswith(".mjs")
    argv = ["node", str(NODE / file)] if node else [str(VENV / "bin" / "python"), str(PROGRAMS / file)]
    return Client(name, versions, [Call(c, [*argv, c], streamed) for c, streamed in calls],
                  [(str((PROGRAMS / file).relative_to(REPO)), "js" if node else "python", (PROGRAMS / file).read_text())], env or {})


def openai_python(setup: Setup) -> Client:
    return _program("openai (Python SDK)", "openai_python.py", f"openai {setup.python['openai']} (PyPI)", STANDARD_CALLS)


def openai_node(setup: Setup) -> Client:
    return _program("openai (Node SDK)", "openai_node.mjs", f"openai {setup.node['openai']} (npm), node {setup.node['node']}", STANDARD_CALLS)


def langchain_openai(setup: Setup) -> Client:
    v = setup.python
    return _program("langchain-openai", "langchain_openai_client.py",
                    f"langchain-openai {v['langchain-openai']}, langchain-core {v['langchain-core']}, openai {v['openai']}",
                    (("llm", False), ("llm-stream", True), ("chat", False), ("chat-stream", True)))


def litellm(setup: Setup) -> Client:
    # Offline: litellm's model price list from its package, not from the network at import.
    return _program("litellm", "litellm_client.py", f"litellm {setup.python['litellm']}, openai {setup.python['openai']}",
                    (("chat", False), ("chat-stream", True), ("text", False), ("text-stream", True)), {"LITELLM_LOCAL_MODEL_COST_MAP": "True"})


def llm_cli(setup: Setup) -> Client:
    """Simon Willison's llm CLI: two models in a private LLM_USER_PATH's extra-openai-models.yaml,
    a chat one and a completion one, both at the server's api_base."""
    LLM_HOME.mkdir(parents=True, exist_ok=True)
    yaml = (f"- model_id: gpt2onnx-chat\n  model_name: {MODEL}\n  api_base: {setup.base_url}\n"
            f"- model_id: gpt2onnx-completion\n  model_name: {MODEL}\n  api_base: {setup.base_url}\n  completion: true\n")
    (LLM_HOME / "extra-openai-models.yaml").write_text(yaml)
    llm = str(VENV / "bin" / "llm")
    commands = {
        "chat": [llm, "-m", "gpt2onnx-chat", "--no-stream", "--no-log", "-o", "max_tokens", "20", "Tell me a fortune."],
        "chat-stream": [llm, "-m", "gpt2onnx-chat", "--no-log", "-o", "max_tokens", "20", "Tell me a fortune."],
        "completion": [llm, "-m", "gpt2onnx-completion", "--no-stream", "--no-log", "-o", "max_tokens", "20", "Once upon a time"],
        "completion-stream": [llm, "-m", "gpt2onnx-completion", "--no-log", "-o", "max_tokens", "20", "Once upon a time"],
    }
    shown = "\n".join(" ".join(["llm", *argv[1:-1], repr(argv[-1])]) for argv in commands.values())
    calls = [Call(name, argv, "stream" in name) for name, argv in commands.items()]
    return Client("llm CLI", f"llm {setup.python['llm']}, openai {setup.python['openai']}", calls,
                  [("$LLM_USER_PATH/extra-openai-models.yaml (api_base: the proxy's address of this run)", "yaml", yaml),
                   ("commands (LLM_USER_PATH=.cache/clients-llm)", "sh", shown)],
                  {"LLM_USER_PATH": str(LLM_HOME)})


def guidance(setup: Setup) -> Client:
    v = setup.python
    return _program("guidance", "guidance_client.py", f"guidance {v['guidance']}, llguidance {v['llguidance']}, openai {v['openai']}",
                    (("gen", False), ("gen-stream", True)))


CLIENTS = (openai_python, openai_node, langchain_openai, litellm, llm_cli, guidance)
