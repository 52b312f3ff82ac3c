"""The Gemini ``generativelanguage`` v1beta JSON, as FeatherGate reads and writes it.

camelCase throughout: the REST front end also parses snake_case, but answers
in camelCase only, and one spelling keeps the fake server strict
(PROTOCOLS.md §3.2). Response types are what a well-behaved upstream sends;
the translators still check types before use, because a 200 body is not a
promise.
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

__all__ = [
    "Blob",
    "Candidate",
    "Content",
    "FileData",
    "FunctionCall",
    "FunctionCallingConfig",
    "FunctionDeclaration",
    "FunctionResponse",
    "GenerateContentRequest",
    "GenerateContentResponse",
    "GenerationConfig",
    "GoogleError",
    "Part",
    "PromptFeedback",
    "ThinkingConfig",
    "Tool",
    "ToolConfig",
    "UsageMetadata",
]


class Blob(TypedDict):
    mimeType: str
    data: str  # base64


class FileData(TypedDict, total=False):
    mimeType: str
    fileUri: Required[str]


class FunctionCall(TypedDict, total=False):
    name: Required[str]
    args: dict[str, Any]
    id: str


class FunctionResponse(TypedDict, total=False):
    name: Required[str]
    response: Required[dict[str, Any]]
    id: str


class Part(TypedDict, total=False):
    text: str
    thought: bool
    thoughtSignature: str
    inlineData: Blob
    fileData: FileData
    functionCall: FunctionCall
    functionResponse: FunctionResponse


class Content(TypedDict, total=False):
    role: str  # "user" | "model"
    parts: Required[list[Part]]


class ThinkingConfig(TypedDict, total=False):
    thinkingBudget: int
    includeThoughts: bool


class GenerationConfig(TypedDict, total=False):
    temperature: float
    topP: float
    topK: int
    maxOutputTokens: int
    stopSequences: list[str]
    candidateCount: int
    seed: int
    presencePenalty: float
    frequencyPenalty: float
    responseLogprobs: bool
    logprobs: int
    responseMimeType: str
    responseJsonSchema: dict[str, Any]
    thinkingConfig: ThinkingConfig


class FunctionDeclaration(TypedDict, total=False):
    name: Required[str]
    description: str
    parameters: dict[str, Any]  # the OpenAPI 3.0 subset, see schema.py


class Tool(TypedDict):
    functionDeclarations: list[FunctionDeclaration]


class FunctionCallingConfig(TypedDict, total=False):
    mode: Required[str]  # AUTO | ANY | NONE | VALIDATED
    allowedFunctionNames: list[str]


class ToolConfig(TypedDict):
    functionCallingConfig: FunctionCallingConfig


class GenerateContentRequest(TypedDict, total=False):
    contents: Required[list[Content]]
    systemInstruction: Content
    generationConfig: GenerationConfig
    tools: list[Tool]
    toolConfig: ToolConfig


class Candidate(TypedDict, total=False):
    content: Content  # absent (or without parts) on SAFETY and similar stops
    finishReason: str
    index: int
    safetyRatings: list[dict[str, Any]]
    logprobsResult: dict[str, Any]


class PromptFeedback(TypedDict, total=False):
    blockReason: str
    safetyRatings: list[dict[str, Any]]


class UsageMetadata(TypedDict, total=False):
    promptTokenCount: int
    candidatesTokenCount: int
    thoughtsTokenCount: int
    cachedContentTokenCount: int
    toolUsePromptTokenCount: int
    totalTokenCount: int


class GenerateContentResponse(TypedDict, total=False):
    candidates: list[Candidate]
    promptFeedback: PromptFeedback
    usageMetadata: UsageMetadata
    modelVersion: str
    responseId: str


class GoogleError(TypedDict, total=False):
    """``{"error": GoogleError}``; ``details`` entries are keyed by ``@type``."""

    code: int
    message: str
    status: str  # INVALID_ARGUMENT, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ...
    details: list[dict[str, Any]]
