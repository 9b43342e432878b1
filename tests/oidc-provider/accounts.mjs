// The accounts of the test providers: whoever signs in at the development login form
// as `<login>` is `<login>@example.org` (verified), named `Node <login>`.
export async function findAccount(ctx, sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: `${sub}@example.org`,
        email_verified: true,
        name: `Node ${sub}`,
        preferred_username: sub,
      };
    },
  };
}
