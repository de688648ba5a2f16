// An ACP client written with the official TypeScript SDK (@agentclientprotocol/sdk), driving
// `creel acp` as an editor would. Run by crates/creel/tests/acp.rs with Node 24:
//
//   node client.mjs SCENARIO
//
// Environment: ACP_SDK (the SDK's package directory), ACP_AGENT_BIN (the creel binary, started as
// `creel acp` with this process's environment), ACP_CWD (the working directory to give it),
// ACP_SESSION (for `load`). Prints one JSON report on stdout: what each step answered and
// every session/update and session/request_permission the agent sent.

import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import { pathToFileURL } from "node:url";

const sdk = await import(pathToFileURL(`${process.env.ACP_SDK}/dist/v1/stable/acp.js`).href);
const { methods } = sdk;
const scenario = process.argv[2];
const cwd = process.env.ACP_CWD;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const report = { steps: {}, updates: {}, permissions: [] };

/// The agent process and the SDK's client on its stdio; updates go to report.updates[label].
function connect() {
  const child = spawn(process.env.ACP_AGENT_BIN, ["acp"], { stdio: ["pipe", "pipe", "inherit"] });
  const stream = sdk.ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));
  const state = { label: "none" };
  const app = sdk
    .client({ name: "creel-test-client" })
    .onNotification(methods.client.session.update, ({ params }) => {
      (report.updates[state.label] ??= []).push(params.update);
    })
    .onRequest(methods.client.session.requestPermission, ({ params }) => {
      report.permissions.push(params);
      const allow = params.options.find((o) => o.kind === "allow_once");
      return { outcome: { outcome: "selected", optionId: allow.optionId } };
    });
  return { child, stream, app, state };
}

/// A request's answer, or its error as {error: {code, message}}.
async function settle(promise) {
  try {
    return await promise;
  } catch (e) {
    return { error: { code: e.code, message: e.message, data: e.data } };
  }
}

const text = (t) => [{ type: "text", text: t }];

async function main(c, ctx) {
  const { state } = c;
  const prompt = (sessionId, label, t) => {
    state.label = label;
    return settle(ctx.request(methods.agent.session.prompt, { sessionId, prompt: text(t) }));
  };
  report.steps.initialize = await ctx.request(methods.agent.initialize, {
    protocolVersion: 1,
    clientCapabilities: {},
    clientInfo: { name: "creel-test-client", version: "1" },
  });
  if (scenario === "load") {
    state.label = "load";
    report.steps.load = await settle(
      ctx.request(methods.agent.session.load, {
        sessionId: process.env.ACP_SESSION,
        cwd,
        mcpServers: [],
      }),
    );
    report.steps.list = await settle(ctx.request(methods.agent.session.list, { cwd }));
    report.steps.loadUnknown = await settle(
      ctx.request(methods.agent.session.load, { sessionId: "acp-nosuchthing", cwd, mcpServers: [] }),
    );
    return;
  }
  if (scenario === "reattach") {
    // The session of a client that went away, its job still running: reopen it, find the next
    // prompt refused while the job runs, and cancel the job.
    const sessionId = process.env.ACP_SESSION;
    state.label = "reattach";
    report.steps.load = await settle(
      ctx.request(methods.agent.session.load, { sessionId, cwd, mcpServers: [] }),
    );
    report.steps.busy = await settle(
      ctx.request(methods.agent.session.prompt, { sessionId, prompt: text("ACP-EXTRA") }),
    );
    await ctx.notify(methods.agent.session.cancel, { sessionId });
    await sleep(2000);
    return;
  }
  if (scenario === "disconnect") {
    const s = await ctx.request(methods.agent.session.new, { cwd, mcpServers: [] });
    report.steps.session = s;
    // Not awaited: the client goes away while the job runs.
    ctx.request(methods.agent.session.prompt, { sessionId: s.sessionId, prompt: text("ACP-SLOW: take your time") }).catch(() => {});
    await sleep(4000);
    return;
  }
  report.steps.badCwd = await settle(
    ctx.request(methods.agent.session.new, { cwd: `${cwd}/does-not-exist`, mcpServers: [] }),
  );
  const s = await ctx.request(methods.agent.session.new, { cwd, mcpServers: [] });
  report.steps.session = s;
  const id = s.sessionId;
  report.steps.unknownSession = await prompt("acp-nosuchthing", "unknown", "hello");

  // A first prompt, and a second one sent while it runs.
  const first = prompt(id, "first", "ACP-ONE: write notes.txt");
  await sleep(300);
  report.steps.busy = await settle(
    ctx.request(methods.agent.session.prompt, { sessionId: id, prompt: text("ACP-EXTRA") }),
  );
  report.steps.first = await first;
  report.steps.resumed = await prompt(id, "resumed", "ACP-TWO: do you remember?");

  // Permission requests come to this client in the ask mode.
  report.steps.setMode = await settle(
    ctx.request(methods.agent.session.setMode, { sessionId: id, modeId: "ask" }),
  );
  report.steps.badMode = await settle(
    ctx.request(methods.agent.session.setMode, { sessionId: id, modeId: "yolo" }),
  );
  report.steps.setModel = await settle(
    ctx.request(methods.agent.session.setConfigOption, { sessionId: id, configId: "model", value: "haiku" }),
  );
  report.steps.approved = await prompt(id, "approved", "ACP-THREE: run a command");

  // Claude asks: the turn ends showing the question; the next prompt answers it.
  report.steps.asked = await prompt(id, "asked", "ACP-FOUR: pick a colour");
  report.steps.answered = await prompt(id, "answered", "BLUE-ANSWER: blue, please");

  // session/cancel while the model hangs.
  const hanging = prompt(id, "cancelled", "ACP-HANG: wait for it");
  await sleep(5000);
  await ctx.notify(methods.agent.session.cancel, { sessionId: id });
  report.steps.cancelled = await hanging;
  report.steps.list = await settle(ctx.request(methods.agent.session.list, { cwd }));
}

const c = connect();
const exited = new Promise((r) => c.child.on("exit", (code, signal) => r({ code, signal })));
try {
  await c.app.connectWith(c.stream, (ctx) => main(c, ctx));
} catch (e) {
  report.fatal = String(e?.stack ?? e);
}
// Closing stdin is how a client goes away: the agent must exit, leaving jobs running.
c.child.stdin.end();
report.agentExit = await Promise.race([exited, sleep(10000).then(() => "still running")]);
if (report.agentExit === "still running") c.child.kill("SIGKILL");
process.stdout.write(JSON.stringify(report) + "\n");
