# creel's steering server. It runs inside a job's container, started by Claude Code as the
# stdio MCP server named `creel` (see mcp.json beside it), and gives Claude two tools:
#
#   ask      {question, options?}         Claude asks the person or agent who runs the job
#   approve  {tool_name, input, ...}      Claude Code's --permission-prompt-tool (only with
#                                         permissions = "ask")
#
# It has no network and needs none. A call becomes a file, /creel/asked/NNNNNN.json (the only
# directory the container may write besides the workspace), which creel's monitor on the host
# reads; the answer comes back as /creel/steer/answers/NNNNNN.json (read-only here), written by
# whichever creel process answered (`creel reply`, `creel approve`, MCP, or the monitor's
# rules and timeouts). Files survive any process on either side: a call waits until its answer
# is there, however long, and creel's monitor may die and come back meanwhile.
#
# This file carries no user data; creel writes it unchanged into every job.
import json
import os
import sys
import threading
import time

ASKED = "/creel/asked"
ANSWERS = "/creel/steer/answers"
MAX_ANSWER = 4 << 20
APPROVALS = "--approvals" in sys.argv[1:]
PROTOCOLS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")

out_lock = threading.Lock()
seq_lock = threading.Lock()
next_seq = [0]

ASK = {
    "name": "ask",
    "title": "Ask the person running this job",
    "description": (
        "Ask the person (or orchestrating agent) who started this job a question, and wait "
        "for the answer. Use it when you cannot go on without a decision only they can make: "
        "an ambiguous requirement, a choice between approaches, missing information. Give "
        "`options` when the answer is one of a few choices. The answer comes back as this "
        "tool's result; it may take a while."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "question": {"type": "string", "description": "The question, self-contained."},
            "options": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Possible answers, if the answer is a choice.",
            },
        },
        "required": ["question"],
    },
}
APPROVE = {
    "name": "approve",
    "title": "Permission request (creel)",
    "description": "Claude Code's permission prompt: asks creel whether a tool call may run.",
    "inputSchema": {
        "type": "object",
        "properties": {
            "tool_name": {"type": "string"},
            "input": {"type": "object"},
            "tool_use_id": {"type": "string"},
        },
        "required": ["tool_name", "input"],
    },
}


def send(message):
    data = json.dumps(message, separators=(",", ":")) + "\n"
    with out_lock:
        sys.stdout.write(data)
        sys.stdout.flush()


def reply(rid, result):
    send({"jsonrpc": "2.0", "id": rid, "result": result})


def fail(rid, code, message):
    send({"jsonrpc": "2.0", "id": rid, "error": {"code": code, "message": message}})


def text_result(text, error=False):
    return {"content": [{"type": "text", "text": text}], "isError": error}


def first_free_seq():
    # After a restart of this server within the same job, numbering goes on after the last
    # request already there.
    highest = 0
    try:
        for name in os.listdir(ASKED):
            if len(name) == 11 and name.endswith(".json") and name[:6].isdigit():
                highest = max(highest, int(name[:6]))
    except OSError:
        pass
    return highest + 1


def post(request):
    """Writes the request under the next free number; returns the number."""
    with seq_lock:
        if next_seq[0] == 0:
            next_seq[0] = first_free_seq()
        while True:
            seq = next_seq[0]
            next_seq[0] += 1
            final = "%s/%06d.json" % (ASKED, seq)
            tmp = "%s/.%06d.%d.tmp" % (ASKED, seq, os.getpid())
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(request, f)
            try:
                os.link(tmp, final)
            except FileExistsError:
                os.unlink(tmp)
                continue
            os.unlink(tmp)
            return seq


def await_answer(seq, progress_token):
    path = "%s/%06d.json" % (ANSWERS, seq)
    waited = 0.0
    last_progress = 0.0
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ANSWER + 1)
            if len(data) <= MAX_ANSWER:
                answer = json.loads(data)
                if isinstance(answer, dict) and isinstance(answer.get("text"), str):
                    return answer["text"]
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
        waited += 0.2
        # Progress now and then keeps a client's idle timer from ending the call.
        if progress_token is not None and waited - last_progress >= 20:
            last_progress = waited
            send({
                "jsonrpc": "2.0",
                "method": "notifications/progress",
                "params": {"progressToken": progress_token, "progress": waited,
                           "message": "waiting for an answer through creel"},
            })


def call(rid, params):
    name = params.get("name")
    args = params.get("arguments") or {}
    token = (params.get("_meta") or {}).get("progressToken")
    if not isinstance(args, dict):
        return reply(rid, text_result("arguments must be an object", True))
    if name == "ask":
        question = args.get("question")
        options = args.get("options") or []
        if not isinstance(question, str) or not question.strip():
            return reply(rid, text_result("`question` must be a non-empty string", True))
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            return reply(rid, text_result("`options` must be a list of strings", True))
        request = {"kind": "question", "question": question, "options": options}
    elif name == "approve" and APPROVALS:
        tool = args.get("tool_name")
        if not isinstance(tool, str):
            return reply(rid, text_result("`tool_name` must be a string", True))
        request = {"kind": "approval", "tool_name": tool, "input": args.get("input"),
                   "tool_use_id": args.get("tool_use_id")}
    else:
        return fail(rid, -32602, "unknown tool: %r" % (name,))
    try:
        seq = post(request)
    except OSError as e:
        return reply(rid, text_result("creel could not pass this on: %s" % e, True))
    reply(rid, text_result(await_answer(seq, token)))


def main():
    for line in sys.stdin:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if not isinstance(message, dict):
            continue
        method = message.get("method")
        rid = message.get("id")
        params = message.get("params") or {}
        if rid is None:
            continue  # notifications: nothing to do
        if method == "initialize":
            wanted = params.get("protocolVersion")
            reply(rid, {
                "protocolVersion": wanted if wanted in PROTOCOLS else PROTOCOLS[1],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "creel", "version": "1"},
                "instructions": "creel runs this session as a background job. To ask the "
                "person who started it something, call the `ask` tool.",
            })
        elif method == "tools/list":
            reply(rid, {"tools": [ASK, APPROVE] if APPROVALS else [ASK]})
        elif method == "tools/call":
            threading.Thread(target=call, args=(rid, params), daemon=True).start()
        elif method == "ping":
            reply(rid, {})
        else:
            fail(rid, -32601, "method not found: %s" % (method,))


if __name__ == "__main__":
    main()
