import { useState } from 'react'
import { Pressable, StyleSheet, Text, View } from 'react-native'

export default function App() {
  const [count, setCount] = useState(0)
  return (
    <View style={styles.screen}>
      <Text nativeID="title" testID="title" role="heading" aria-level={1} style={styles.title}>
        Hello from the preview
      </Text>
      <Pressable
        nativeID="counter"
        testID="counter"
        role="button"
        onPress={() => setCount((n) => n + 1)}
        style={styles.button}
      >
        <Text style={styles.label}>count is {count}</Text>
      </Pressable>
    </View>
  )
}

const styles = StyleSheet.create({
  screen: { flex: 1, alignItems: 'center', justifyContent: 'center', gap: 16 },
  title: { fontSize: 28, fontWeight: '600' },
  button: { paddingHorizontal: 16, paddingVertical: 8, borderRadius: 8, backgroundColor: '#2563eb' },
  label: { color: 'white', fontSize: 16 },
})
