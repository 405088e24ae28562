import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { ServiceError } from "../serving/generation.ts";
import { ChatTemplateError } from "../tokenizer/tokenizer.ts";
import { ApiError, errorBody, errorResponse, fromZodError, paramName, toApiError } from "./errors.ts";

describe("paramName", () => {
  test("joins keys with dots and indexes with brackets", () => {
    expect(paramName(["messages", 2, "content"])).toBe("messages[2].content");
    expect(paramName([0, "text"])).toBe("[0].text");
    expect(paramName([])).toBeNull();
  });
});

describe("error bodies", () => {
  test("have OpenAI's shape with the HTTP status as code", async () => {
    const e = new ApiError(404, "not_found_error", "no such model", "model");
    expect(errorBody(e)).toEqual({ error: { message: "no such model", type: "not_found_error", param: "model", code: 404 } });
    const r = errorResponse(e, { allow: "POST" });
    expect(r.status).toBe(404);
    expect(r.headers.get("allow")).toBe("POST");
    expect(await r.json()).toEqual(errorBody(e));
  });

  test("a zod failure names the first bad field and lists every fault", () => {
    const r = z.object({ a: z.number().min(0), b: z.string() }).safeParse({ a: -1, b: 3 });
    const e = fromZodError(r.error!);
    expect(e.status).toBe(400);
    expect(e.param).toBe("a");
    expect(e.message).toContain("a: ");
    expect(e.message).toContain("b: ");
  });
});

describe("toApiError", () => {
  test("passes a ServiceError's status, type, message and param straight through", () => {
    const e = toApiError(new ServiceError(429, "rate_limit_error", "busy", null));
    expect([e.status, e.type, e.message, e.param]).toEqual([429, "rate_limit_error", "busy", null]);
  });

  test("a missing chat template is a 400 that says what to do", () => {
    const e = toApiError(new ChatTemplateError("missing", "no template"));
    expect(e.status).toBe(400);
    expect(e.message).toContain("no chat template");
    expect(e.message).toContain("/v1/completions");
  });

  test("a template that fails to render is a 400 carrying the template's message", () => {
    const e = toApiError(new ChatTemplateError("render", "roles must alternate"));
    expect(e.status).toBe(400);
    expect(e.message).toContain("roles must alternate");
  });

  test("anything else is a 500", () => {
    expect(toApiError(new TypeError("boom")).status).toBe(500);
  });
});
