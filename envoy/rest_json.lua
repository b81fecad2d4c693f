-- Mockex edge: what Envoy's grpc_json_transcoder does not do for REST/JSON, in one Lua filter that
-- runs before it (see envoy/envoy.yaml). A template: mockex/edge.py fills in the tables from the
-- google.api.http annotations of proto/ and writes the result next to the rendered envoy.yaml.
--
-- 1. Unknown JSON body fields. The transcoder drops them silently (envoy#46623), so
--    {"symbol":"ACME","qty":5} would become an order for 0. A body that names a field its request
--    message does not have is refused here with 400, naming the field.
-- 2. response_body. The transcoder refuses it for non-HttpBody fields (envoy#11136); the edge
--    strips it from the descriptor set and lifts the field out of the answer here:
--    {"order":{...}} -> {...}. The gRPC method is marked by a filter after the transcoder.
-- 3. Numbers as strings. The transcoder takes {"quantity":"5"} (proto3's JSON mapping allows it);
--    SPEC.md says numbers are JSON numbers, so a string for a numeric field is refused here.
-- 4. The HTTP method. The transcoder turns every REST call into a POST of its gRPC method, so
--    the request's own method is kept in x-mockex-http-method (replacing any a client sent) for
--    the access log and the gateway's request log.
-- 5. The transcoder's errors in a participant's words: `side must be BUY or SELL, got "buy"`
--    instead of `side: invalid value "buy" for type type.googleapis.com/exchange.v1.Side`, an
--    unknown query parameter with the allowed ones, invalid JSON said as such, and an unknown
--    path with where to look.

-- "METHOD /path" of every rule with a body -> {field name = true, or "number" for a numeric
-- field} (JSON and proto names).
local BODY_FIELDS = {${body_fields}}

-- Enum name -> its values as participants write them ("BUY or SELL").
local ENUM_VALUES = {${enum_values}}

-- Request message of a rule without a body -> its query parameters ("depth").
local QUERY_FIELDS = {${query_fields}}

-- The top-level keys of a JSON object (or nil when the text is not an object), and the set of
-- those whose value is a string. Strings are skipped whole (escapes included); malformed JSON is
-- left for the transcoder to refuse.
local function top_level_keys(json)
  local start = json:find("%S")
  if start == nil or json:sub(start, start) ~= "{" then
    return nil
  end
  local keys = {}
  local strings = {}
  local depth = 0
  local expect_key = false
  local i = start
  while true do
    i = json:find('[{}%[%],"]', i)
    if i == nil then
      return keys, strings
    end
    local c = json:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        j = json:find('["\\]', j)
        if j == nil then
          return keys, strings
        end
        if json:sub(j, j) == "\\" then
          j = j + 2
        else
          break
        end
      end
      if expect_key then
        local key = json:sub(i + 1, j - 1)
        keys[#keys + 1] = key
        local value = json:find("%S", (json:find(":", j + 1, true) or #json) + 1)
        if value ~= nil and json:sub(value, value) == '"' then
          strings[key] = true
        end
        expect_key = false
      end
      i = j + 1
    else
      if c == "{" or c == "[" then
        depth = depth + 1
      elseif c == "}" or c == "]" then
        depth = depth - 1
      end
      expect_key = depth == 1 and (c == "," or (c == "{" and i == start))
      i = i + 1
    end
  end
end

function envoy_on_request(request_handle)
  -- Read every header first: the headers object is gone once body() has waited for the body.
  local headers = request_handle:headers()
  local method = headers:get(":method") or ""
  headers:replace("x-mockex-http-method", method)
  local path = (headers:get(":path") or ""):gsub("%?.*", "")
  request_handle:streamInfo():dynamicMetadata():set("mockex.request", "line", method .. " " .. path)
  local rule = (headers:get(":method") or "") .. " " .. (headers:get(":path") or "")
  local query = rule:find("?", 1, true)
  if query ~= nil then
    rule = rule:sub(1, query - 1)
  end
  local known = BODY_FIELDS[rule]
  local content_type = headers:get("content-type") or ""
  if known == nil or content_type:sub(1, 16) == "application/grpc" then
    return
  end
  local body = request_handle:body()
  if body == nil then
    return
  end
  local keys, strings = top_level_keys(body:getBytes(0, body:length()))
  for _, key in ipairs(keys or {}) do
    if not known[key] then
      request_handle:respond(
        {[":status"] = "400"},
        "unknown field \"" .. key .. "\" in the body of " .. rule
      )
      return
    end
    if known[key] == "number" and strings[key] then
      request_handle:respond(
        {[":status"] = "400"},
        key .. " must be a JSON number, not a string (write 5, not \"5\")"
      )
      return
    end
  end
end

-- The JSON string `text` (without its quotes) as Lua text, and back; enough for messages.
local function json_unescape(text)
  return (text:gsub("\\(.)", {n = "\n", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/"}))
end

local function json_escape(text)
  return (text:gsub('[%c"\\]', function(c)
    if c == "\n" then
      return "\\n"
    elseif c == '"' or c == "\\" then
      return "\\" .. c
    end
    return " "
  end))
end

local JSON_ERRORS = {"^Unexpected", "^Expected", "^Invalid", "^Unterminated", "^Non%-whitespace"}

-- The participant's words for one of the transcoder's messages, or nil to keep it.
local function participant_message(message, request)
  local field, value, enum =
    message:match('^(.-): invalid value "(.*)" for type type%.googleapis%.com/exchange%.v1%.([%w_]+)$$')
  if field ~= nil and ENUM_VALUES[enum] ~= nil then
    return field .. " must be " .. ENUM_VALUES[enum] .. ', got "' .. value .. '"'
  end
  local unknown, type_name = message:match('^Could not find field "(.-)" in the type "(.-)"%.$$')
  if unknown ~= nil then
    return 'unknown query parameter "' .. unknown .. '" (allowed: '
      .. (QUERY_FIELDS[type_name] or "none") .. ")"
  end
  if message:match("^Could not resolve .- to a method%.$$") then
    return "no such path: " .. (request or "?") .. "; see GET /openapi.json"
  end
  for _, pattern in ipairs(JSON_ERRORS) do
    if message:match(pattern) then
      return "body is not valid JSON: " .. message:gsub("\n.*", "")
    end
  end
  return nil
end

local function reword_error(response_handle, headers)
  local body = response_handle:body()
  if body == nil then
    return
  end
  local json = body:getBytes(0, body:length())
  local before, escaped, after = json:match('^(.-"message":")(.-[^\\])(".*)$$')
  if escaped == nil then
    return
  end
  local request = response_handle:streamInfo():dynamicMetadata():get("mockex.request")
  local reworded = participant_message(json_unescape(escaped), request and request["line"])
  if reworded ~= nil then
    body:setBytes(before .. json_escape(reworded) .. after)
  end
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local status = headers:get(":status") or ""
  if (status == "400" or status == "404") and headers:get("content-type") == "application/json" then
    reword_error(response_handle, headers)
    return
  end
  local marked = response_handle:streamInfo():dynamicMetadata():get("mockex.edge")
  if marked == nil or marked["response_body"] == nil then
    return
  end
  if status ~= "200" or headers:get("content-type") ~= "application/json" then
    return
  end
  local body = response_handle:body()
  local json = body:getBytes(0, body:length())
  local prefix = '{"' .. marked["response_body"] .. '":'
  if json:sub(1, #prefix) == prefix and json:sub(-1) == "}" then
    body:setBytes(json:sub(#prefix + 1, -2))
  end
end
