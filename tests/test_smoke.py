async def test_integration_round_trip(api):
    config_id = await api.integration_with_config()
    _, body = await api.call("PATCH", "/crm/mcp", 200, json={"enabled": True, "configId": config_id})
    assert body["apiKey"].startswith("mcpk_")
