from shared.roles import Service


async def test_assertion_is_reused_per_caller_and_service_but_not_across_them(gateway):
    tokens, assertions = gateway.runtime.tokens, gateway.runtime.assertions

    def caller(*roles):
        return tokens.verify(tokens.issue(username="alice", roles=roles).token)

    first = assertions.get(caller("admin"), Service.TRADING)
    assert assertions.get(caller("admin"), Service.TRADING) == first
    assert assertions.get(caller("admin"), Service.MARKET) != first
    assert assertions.get(caller("trading"), Service.TRADING) != first
