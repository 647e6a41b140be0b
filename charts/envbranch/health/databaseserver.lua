-- Argo CD health for envbranch.io/DatabaseServer: the operator probes the server and sets Ready.
-- Progressing until the current generation has been probed; Healthy when Ready=True; Degraded
-- when the probe failed (Ready=False: unreachable, bad credentials, missing privileges) or Stalled.
local hs = {status = "Progressing", message = "waiting for the first probe"}
local st = obj.status
if st == nil then
  return hs
end
local ready, stalled = nil, nil
for _, c in ipairs(st.conditions or {}) do
  if c.type == "Ready" then ready = c end
  if c.type == "Stalled" then stalled = c end
end
local generation = obj.metadata.generation
local observed = st.observedGeneration
if ready == nil or observed == nil or (generation ~= nil and observed < generation) then
  hs.message = "generation " .. (generation or "?") .. " not yet probed"
  return hs
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or "stalled"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.status == "False" then
  hs.status = "Degraded"
end
hs.message = ready.message or ready.reason or ""
return hs
